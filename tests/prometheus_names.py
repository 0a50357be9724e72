# The names config/prometheus/rules.yml must keep (DESIGN §4): the dashboard, the rule tests and
# the real-Prometheus test all refer to them.
from __future__ import annotations

RECORDING_RULES = (
    "migproxy:requests:rate1m",
    "migproxy:stale_request_share:ratio_rate1m",
    "migproxy:reused_request_share:ratio_rate1m",
    "migproxy:closes:rate1m",
    "migproxy:traffic_share:ratio_rate1m",
    "migproxy:reconnects:rate1m",
    "migproxy:returning_reconnects:rate1m",
)
ALERTS = (
    "MigproxyConfigReloadFailed",
    "MigproxyMigrationStalled",
    "MigproxyUpstreamErrors",
    "MigproxyInjectionWithoutReconnects",
)
