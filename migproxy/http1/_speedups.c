/* The common case of migproxy.http1.parse in C: one pass over a head, no regex, no copies.
 *
 * Rule: this file is an accelerator, never a second parser. parse.py is the specification.
 * Each function here builds the head only when it is sure to build exactly what parse.py
 * would build from the same bytes; for anything else (any error, and every valid but rare
 * form: chunked requests, absolute-form targets, Upgrade, repeated framing fields, Connection
 * lists, HTTP/2.x lines...) it calls parse.py's function, which decides and explains. So a
 * gap here costs speed, never correctness, and tests/http1/test_http1_speedups.py checks the
 * two against each other on every head of the parser tests plus generated ones.
 *
 * The grammar is RFC 9112 §3-§5: request-line / status-line, then field lines
 * `token ":" OWS value OWS CRLF` whose value bytes are HTAB, SP, VCHAR or obs-text.
 *
 * The objects these functions build (RequestHead, ResponseHead, Fields, BodyKind members, the
 * shared token lists) come from parse.py through bind(), once, at import.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* ---------------------------------------------------------------- what parse.py hands over */

static PyObject *RequestHeadType;    /* migproxy.http1.events.RequestHead */
static PyObject *ResponseHeadType;   /* migproxy.http1.events.ResponseHead */
static PyObject *FieldsType;         /* migproxy.http1.headers.Fields */
static PyObject *BodyNone, *BodyLength, *BodyChunked, *BodyUntilClose;
static PyObject *NoTokens;           /* the shared empty token list */
static PyObject *TokensKeepAlive, *TokensClose, *TokensUpgrade;  /* shared one-token lists */
static PyObject *RequestFallback;    /* parse.py's parse_request_head */
static PyObject *ResponseFallback;   /* parse.py's parse_response_head */
static PyObject *SingleConnectionLine;  /* the interned attribute name */

/* ---------------------------------------------------------------- byte classes */

enum { C_TCHAR = 1, C_VALUE = 2, C_TARGET = 4, C_DIGIT = 8 };
static unsigned char byte_class[256];

static void
init_byte_classes(void)
{
    const char *tchar_punct = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c != 0 && strchr(tchar_punct, c) != NULL)) {
            k |= C_TCHAR;
        }
        if (c == '\t' || (c >= 0x20 && c <= 0x7e) || c >= 0x80) {
            k |= C_VALUE;  /* field-value and reason-phrase bytes */
        }
        if (c >= 0x21 && c <= 0x7e) {
            k |= C_TARGET;
        }
        if (c >= '0' && c <= '9') {
            k |= C_DIGIT;
        }
        byte_class[c] = k;
    }
}

/* ---------------------------------------------------------------- the fields that matter */

/* The fields parse._SPECIAL finds; the hop-by-hop ones first. */
enum {
    F_CONNECTION,
    F_KEEP_ALIVE,
    F_PROXY_CONNECTION,
    F_TE,
    F_TRAILER,
    F_TRANSFER_ENCODING,
    F_UPGRADE,
    F_X_FORWARDED_PROTO,  /* never forwarded from a client: the proxy sets its own */
    F_CONTENT_LENGTH,
    F_HOST,
    F_EXPECT,
    F_COUNT
};
#define HOP_BY_HOP_OR_PROTO ((1u << (F_X_FORWARDED_PROTO + 1)) - 1u)

typedef struct {
    unsigned seen;                    /* bit per field */
    const char *value[F_COUNT];       /* after the leading OWS */
    Py_ssize_t length[F_COUNT];       /* up to the CR: trailing OWS included, as in parse.py */
    Py_ssize_t lines;
} Special;

/* Whether the token p[0:n] is `lower` (lower case), ignoring ASCII case. Valid for tokens
 * only: over tchar bytes, `| 0x20` folds A-Z onto a-z and maps nothing else onto a letter or
 * '-'. */
static int
token_is(const char *p, Py_ssize_t n, const char *lower, Py_ssize_t lower_n)
{
    if (n != lower_n) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((p[i] | 0x20) != lower[i]) {
            return 0;
        }
    }
    return 1;
}

#define IS(p, n, lit) token_is((p), (n), (lit), (Py_ssize_t)(sizeof(lit) - 1))

static int
special_field(const char *name, Py_ssize_t n)
{
    switch (n) {
    case 2:
        return IS(name, n, "te") ? F_TE : -1;
    case 4:
        return IS(name, n, "host") ? F_HOST : -1;
    case 6:
        return IS(name, n, "expect") ? F_EXPECT : -1;
    case 7:
        if (IS(name, n, "trailer")) return F_TRAILER;
        return IS(name, n, "upgrade") ? F_UPGRADE : -1;
    case 10:
        if (IS(name, n, "connection")) return F_CONNECTION;
        return IS(name, n, "keep-alive") ? F_KEEP_ALIVE : -1;
    case 14:
        return IS(name, n, "content-length") ? F_CONTENT_LENGTH : -1;
    case 16:
        return IS(name, n, "proxy-connection") ? F_PROXY_CONNECTION : -1;
    case 17:
        if (IS(name, n, "transfer-encoding")) return F_TRANSFER_ENCODING;
        return IS(name, n, "x-forwarded-proto") ? F_X_FORWARDED_PROTO : -1;
    default:
        return -1;
    }
}

/* Scans the field block p[0:n] (every line ending in CRLF). Returns 0 when every line is
 * valid and no framing or hop-by-hop field is repeated; -1 otherwise (parse.py decides). */
static int
scan_fields(const char *p, Py_ssize_t n, Special *sp)
{
    const char *end = p + n;
    sp->seen = 0;
    sp->lines = 0;
    while (p < end) {
        const char *name = p;
        while (p < end && (byte_class[(unsigned char)*p] & C_TCHAR)) {
            p++;
        }
        if (p == name || p == end || *p != ':') {
            return -1;
        }
        Py_ssize_t name_n = p - name;
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        const char *value = p;
        while (p < end && (byte_class[(unsigned char)*p] & C_VALUE)) {
            p++;
        }
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
            return -1;
        }
        int field = special_field(name, name_n);
        if (field >= 0) {
            if (sp->seen & (1u << field)) {
                return -1;  /* repeated: parse.py joins the values */
            }
            sp->seen |= 1u << field;
            sp->value[field] = value;
            sp->length[field] = p - value;
        }
        p += 2;
        sp->lines++;
    }
    return 0;
}

static Py_ssize_t
rstrip_ows(const char *p, Py_ssize_t n)
{
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }
    return n;
}

/* The value of a (single-line) Content-Length, or -1 when parse.py must judge it. */
static long long
content_length(const Special *sp)
{
    const char *v = sp->value[F_CONTENT_LENGTH];
    Py_ssize_t n = rstrip_ows(v, sp->length[F_CONTENT_LENGTH]);
    if (n == 0 || n > 18) {
        return -1;
    }
    long long length = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!(byte_class[(unsigned char)v[i]] & C_DIGIT)) {
            return -1;
        }
        length = length * 10 + (v[i] - '0');
    }
    return length;
}

/* Whether a field's value, without trailing OWS, is `lower`, ignoring ASCII case. */
static int
value_is(const Special *sp, int field, const char *lower)
{
    const char *v = sp->value[field];
    Py_ssize_t n = rstrip_ows(v, sp->length[field]);
    Py_ssize_t lower_n = (Py_ssize_t)strlen(lower);
    if (n != lower_n) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }
        if (c != (unsigned char)lower[i]) {
            return 0;
        }
    }
    return 1;
}

typedef struct {
    PyObject *list;   /* new reference: the lower-cased Connection tokens */
    int close;        /* "close" is among them */
    int keep_alive;   /* "keep-alive" is among them */
    int upgrade;      /* "upgrade" is among them */
} Connection;

/* The Connection tokens as parse._tokens gives them. Returns 0, or -1 with no exception set
 * when parse.py must judge (a list, an empty value), or -1 with an exception set. */
static int
connection_tokens(const Special *sp, Connection *conn)
{
    memset(conn, 0, sizeof(*conn));
    if (!(sp->seen & (1u << F_CONNECTION))) {
        conn->list = Py_NewRef(NoTokens);
        return 0;
    }
    const char *v = sp->value[F_CONNECTION];
    Py_ssize_t n = rstrip_ows(v, sp->length[F_CONNECTION]);
    if (n == 0 || memchr(v, ',', (size_t)n) != NULL) {
        return -1;
    }
    if (value_is(sp, F_CONNECTION, "keep-alive")) {
        conn->keep_alive = 1;
        conn->list = Py_NewRef(TokensKeepAlive);
        return 0;
    }
    if (value_is(sp, F_CONNECTION, "close")) {
        conn->close = 1;
        conn->list = Py_NewRef(TokensClose);
        return 0;
    }
    if (value_is(sp, F_CONNECTION, "upgrade")) {
        conn->upgrade = 1;
        conn->list = Py_NewRef(TokensUpgrade);
        return 0;
    }
    /* Some other single token (it may contain inner spaces, as parse.py keeps them). */
    PyObject *token = PyBytes_FromStringAndSize(NULL, n);
    if (token == NULL) {
        return -1;
    }
    char *t = PyBytes_AS_STRING(token);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        t[i] = (char)((c >= 'A' && c <= 'Z') ? (c | 0x20) : c);
    }
    conn->list = PyList_New(1);
    if (conn->list == NULL) {
        Py_DECREF(token);
        return -1;
    }
    PyList_SET_ITEM(conn->list, 0, token);
    return 0;
}

/* Fields(raw), with single_connection_line set as parse._has_hop_by_hop sets it. */
static PyObject *
new_fields(const char *raw, Py_ssize_t n, const Special *sp)
{
    PyObject *block = PyBytes_FromStringAndSize(raw, n);
    if (block == NULL) {
        return NULL;
    }
    PyObject *fields = PyObject_CallOneArg(FieldsType, block);
    Py_DECREF(block);
    if (fields == NULL) {
        return NULL;
    }
    /* The only hop-by-hop field is one Connection line (a list would have been deferred). */
    unsigned others = HOP_BY_HOP_OR_PROTO & ~(1u << F_CONNECTION);
    if ((sp->seen & (1u << F_CONNECTION)) && !(sp->seen & others)) {
        if (PyObject_SetAttr(fields, SingleConnectionLine, Py_True) < 0) {
            Py_DECREF(fields);
            return NULL;
        }
    }
    return fields;
}

/* type(*argv): the head object, built from `n` new references (any of them NULL when its
 * allocation failed, with the exception set), which are released in every case. */
static PyObject *
new_head(PyObject *type, PyObject **argv, int n)
{
    PyObject *head = NULL;
    int ok = 1;
    for (int i = 0; i < n; i++) {
        ok = ok && argv[i] != NULL;
    }
    if (ok) {
        head = PyObject_Vectorcall(type, argv, (size_t)n, NULL);
    }
    for (int i = 0; i < n; i++) {
        Py_XDECREF(argv[i]);
    }
    return head;
}

static int
parse_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char **buf,
           Py_ssize_t *start, Py_ssize_t *end, Py_ssize_t *max_fields)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", want, nargs);
        return -1;
    }
    if (RequestFallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "migproxy.http1.parse has not called bind()");
        return -1;
    }
    if (!PyBytes_CheckExact(args[0])) {
        return 1;  /* bytearray, memoryview...: parse.py takes those */
    }
    Py_ssize_t *ints[3] = {start, end, max_fields};
    for (int i = 0; i < 3; i++) {
        *ints[i] = PyLong_AsSsize_t(args[i + 1]);
        if (*ints[i] == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 1;  /* not an int, or out of range: parse.py says what it makes of it */
        }
    }
    /* 0 <= start <= end <= size, checked before any subtraction (no overflow). */
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (*start < 0 || *start > size || *end < *start || *end > size || *end - *start < 4) {
        return 1;
    }
    *buf = PyBytes_AS_STRING(args[0]);
    return 0;
}

/* ---------------------------------------------------------------- request heads */

static PyObject *
build_request(const char *buf, Py_ssize_t start, Py_ssize_t end, Py_ssize_t max_fields)
{
    /* request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 §3) */
    const char *p = buf + start, *stop = buf + end;
    const char *method = p;
    while (p < stop && (byte_class[(unsigned char)*p] & C_TCHAR)) {
        p++;
    }
    Py_ssize_t method_n = p - method;
    if (method_n == 0 || p == stop || *p++ != ' ') {
        return Py_None;
    }
    const char *target = p;
    while (p < stop && (byte_class[(unsigned char)*p] & C_TARGET)) {
        p++;
    }
    Py_ssize_t target_n = p - target;
    /* Origin-form only; absolute-form, asterisk-form and CONNECT go to parse.py. */
    if (target_n == 0 || target[0] != '/' || IS(method, method_n, "connect")) {
        return Py_None;
    }
    if (stop - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 ||
        !(byte_class[(unsigned char)p[8]] & C_DIGIT) || p[9] != '\r' || p[10] != '\n') {
        return Py_None;
    }
    char minor = p[8];
    int version = minor == '0' ? 10 : 11;
    const char *line_end = p + 9;  /* the request line's CR */
    const char *block = line_end + 2;
    Py_ssize_t block_n = (stop - 2) - block;
    if (block_n < 0 || stop[-2] != '\r' || stop[-1] != '\n') {
        return Py_None;
    }
    Special sp;
    if (scan_fields(block, block_n, &sp) < 0 || sp.lines > max_fields) {
        return Py_None;
    }
    /* Host: exactly one on HTTP/1.1 (RFC 9112 §3.2); a list is an error for parse.py. */
    if (sp.seen & (1u << F_HOST)) {
        if (memchr(sp.value[F_HOST], ',', (size_t)sp.length[F_HOST]) != NULL) {
            return Py_None;
        }
    }
    else if (version == 11) {
        return Py_None;
    }
    /* Framing: Content-Length only; chunked and every error go to parse.py. */
    if (sp.seen & (1u << F_TRANSFER_ENCODING)) {
        return Py_None;
    }
    long long length = 0;
    if (sp.seen & (1u << F_CONTENT_LENGTH)) {
        length = content_length(&sp);
        if (length < 0) {
            return Py_None;
        }
    }
    Connection conn;
    if (connection_tokens(&sp, &conn) < 0) {
        return PyErr_Occurred() ? NULL : Py_None;
    }
    if (conn.upgrade && (sp.seen & (1u << F_UPGRADE)) && version == 11) {
        Py_DECREF(conn.list);
        return Py_None;
    }
    int keep_alive = version == 11 ? !conn.close : (conn.keep_alive && !conn.close);
    int expect = version == 11 && (sp.seen & (1u << F_EXPECT)) &&
                 value_is(&sp, F_EXPECT, "100-continue");
    int hop_by_hop = (sp.seen & HOP_BY_HOP_OR_PROTO) != 0;

    PyObject *argv[12] = {NULL};
    argv[0] = PyBytes_FromStringAndSize(method, method_n);
    argv[1] = PyBytes_FromStringAndSize(target, target_n);
    argv[2] = PyLong_FromLong(version);
    argv[3] = new_fields(block, block_n, &sp);
    argv[4] = Py_NewRef(length ? BodyLength : BodyNone);
    argv[5] = PyLong_FromLongLong(length);
    argv[6] = Py_NewRef(keep_alive ? Py_True : Py_False);
    argv[7] = Py_NewRef(expect ? Py_True : Py_False);
    argv[8] = Py_NewRef(Py_None);
    argv[9] = conn.list;
    argv[10] = Py_NewRef(hop_by_hop ? Py_True : Py_False);
    argv[11] = minor == '1' ? PyBytes_FromStringAndSize(buf + start, line_end + 2 - (buf + start))
                            : PyBytes_FromStringAndSize(NULL, 0);
    return new_head(RequestHeadType, argv, 12);
}

static PyObject *
parse_request_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *buf;
    Py_ssize_t start, end, max_fields;
    int rc = parse_args(args, nargs, 4, &buf, &start, &end, &max_fields);
    if (rc < 0) {
        return NULL;
    }
    if (rc == 0) {
        PyObject *head = build_request(buf, start, end, max_fields);
        if (head != Py_None) {
            return head;  /* the head, or NULL with an exception */
        }
    }
    return PyObject_Vectorcall(RequestFallback, args, (size_t)nargs, NULL);
}

/* ---------------------------------------------------------------- response heads */

static PyObject *
build_response(const char *buf, Py_ssize_t start, Py_ssize_t end, Py_ssize_t max_fields,
               PyObject *method)
{
    /* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 §4);
     * parse.py also takes a line that ends right after the code. */
    const char *p = buf + start, *stop = buf + end;
    if (stop - p < 14 || memcmp(p, "HTTP/1.", 7) != 0 ||
        !(byte_class[(unsigned char)p[7]] & C_DIGIT) || p[8] != ' ') {
        return Py_None;
    }
    char minor = p[7];
    int version = minor != '0' ? 11 : 10;
    for (int i = 9; i < 12; i++) {
        if (!(byte_class[(unsigned char)p[i]] & C_DIGIT)) {
            return Py_None;
        }
    }
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status < 100) {
        return Py_None;
    }
    p += 12;
    const char *reason = p;
    Py_ssize_t reason_n = 0;
    if (*p == ' ') {
        reason = ++p;
        while (p < stop && (byte_class[(unsigned char)*p] & C_VALUE)) {
            p++;
        }
        reason_n = p - reason;
    }
    if (stop - p < 2 || p[0] != '\r' || p[1] != '\n') {
        return Py_None;
    }
    const char *line_end = p;
    const char *block = line_end + 2;
    Py_ssize_t block_n = (stop - 2) - block;
    if (block_n < 0 || stop[-2] != '\r' || stop[-1] != '\n') {
        return Py_None;
    }
    Special sp;
    if (scan_fields(block, block_n, &sp) < 0 || sp.lines > max_fields) {
        return Py_None;
    }
    /* Framing, RFC 9112 §6.3 in order, as parse._response_framing. */
    PyObject *body;
    long long length = 0;
    int is_head = PyBytes_GET_SIZE(method) == 4 && memcmp(PyBytes_AS_STRING(method), "HEAD", 4) == 0;
    if (is_head || status < 200 || status == 204 || status == 304) {
        body = BodyNone;
    }
    else if (sp.seen & (1u << F_TRANSFER_ENCODING)) {
        if ((sp.seen & (1u << F_CONTENT_LENGTH)) || !value_is(&sp, F_TRANSFER_ENCODING, "chunked")) {
            return Py_None;
        }
        body = BodyChunked;
    }
    else if (sp.seen & (1u << F_CONTENT_LENGTH)) {
        length = content_length(&sp);
        if (length < 0) {
            return Py_None;
        }
        body = BodyLength;
    }
    else {
        body = BodyUntilClose;
    }
    Connection conn;
    if (connection_tokens(&sp, &conn) < 0) {
        return PyErr_Occurred() ? NULL : Py_None;
    }
    int keep_alive = version == 11 ? !conn.close : (conn.keep_alive && !conn.close);
    if (body == BodyUntilClose || (version == 10 && (sp.seen & (1u << F_TRANSFER_ENCODING)))) {
        keep_alive = 0;  /* RFC 9112 §6.1 and §6.3 */
    }
    int hop_by_hop = (sp.seen & HOP_BY_HOP_OR_PROTO) != 0;

    PyObject *argv[10] = {NULL};
    argv[0] = PyLong_FromLong(status);
    argv[1] = PyBytes_FromStringAndSize(reason, reason_n);
    argv[2] = PyLong_FromLong(version);
    argv[3] = new_fields(block, block_n, &sp);
    argv[4] = Py_NewRef(body);
    argv[5] = PyLong_FromLongLong(length);
    argv[6] = Py_NewRef(keep_alive ? Py_True : Py_False);
    argv[7] = conn.list;
    argv[8] = Py_NewRef(hop_by_hop ? Py_True : Py_False);
    argv[9] = minor == '1' && reason_n > 0
                  ? PyBytes_FromStringAndSize(buf + start, line_end + 2 - (buf + start))
                  : PyBytes_FromStringAndSize(NULL, 0);
    return new_head(ResponseHeadType, argv, 10);
}

static PyObject *
parse_response_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *buf;
    Py_ssize_t start, end, max_fields;
    int rc = parse_args(args, nargs, 5, &buf, &start, &end, &max_fields);
    if (rc < 0) {
        return NULL;
    }
    if (rc == 0 && PyBytes_CheckExact(args[4])) {
        PyObject *head = build_response(buf, start, end, max_fields, args[4]);
        if (head != Py_None) {
            return head;
        }
    }
    return PyObject_Vectorcall(ResponseFallback, args, (size_t)nargs, NULL);
}

/* ---------------------------------------------------------------- module */

static PyObject *
bind(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {
        "request_head", "response_head", "fields", "body_none", "body_length",
        "body_chunked", "body_until_close", "no_tokens", "keep_alive_tokens", "close_tokens",
        "upgrade_tokens", "request_fallback", "response_fallback", NULL,
    };
    PyObject *o[13];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOOOO!O!O!O!OO:bind", names, &o[0],
                                     &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &PyList_Type,
                                     &o[7], &PyList_Type, &o[8], &PyList_Type, &o[9],
                                     &PyList_Type, &o[10], &o[11], &o[12])) {
        return NULL;
    }
    PyObject **slots[13] = {
        &RequestHeadType, &ResponseHeadType, &FieldsType, &BodyNone, &BodyLength,
        &BodyChunked, &BodyUntilClose, &NoTokens, &TokensKeepAlive, &TokensClose,
        &TokensUpgrade, &RequestFallback, &ResponseFallback,
    };
    for (int i = 0; i < 13; i++) {
        Py_XSETREF(*slots[i], Py_NewRef(o[i]));
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind", (PyCFunction)(void (*)(void))bind, METH_VARARGS | METH_KEYWORDS,
     "Hand over the types and fallbacks of migproxy.http1.parse (called once, at import)."},
    {"parse_request_head", (PyCFunction)(void (*)(void))parse_request_head, METH_FASTCALL,
     "parse_request_head(buf, start, end, max_fields): parse.parse_request_head, faster."},
    {"parse_response_head", (PyCFunction)(void (*)(void))parse_response_head, METH_FASTCALL,
     "parse_response_head(buf, start, end, max_fields, request_method): "
     "parse.parse_response_head, faster."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "migproxy.http1._speedups",
    "The common case of migproxy.http1.parse, in C (parse.py stays the specification).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_byte_classes();
    SingleConnectionLine = PyUnicode_InternFromString("single_connection_line");
    if (SingleConnectionLine == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
