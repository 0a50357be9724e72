# `migproxy lab`: a VIP migration reproduced on loopback, as the project's demo and its
# convergence benchmark (issue #6). A GSLB DNS server (migproxy.dnsserver) answers a service
# name with the old VIP 127.0.0.2 or the new one 127.0.0.3 by weight, a real `migproxy run`
# stands in front of each VIP, and a fleet of keep-alive clients resolves the name, connects
# and sends requests; the weights change on a schedule and each close policy is measured.
#
# Modules, pure ones first: scenario (the TOML file), fleet (the clients as data), record (the
# per-second counts), analysis (convergence and cost), model (what theory predicts), report
# (text); then the I/O: http and client (the fleet), backend, ports, proxies, run (the
# timeline), plot (matplotlib) and cli.
