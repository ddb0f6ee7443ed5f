"""Every way into a rendered host, read from its rendered configs: nginx's servers and locations, the firewall,
nginx-rtmp, OvenMediaEngine, WireGuard and SSH. One row per way in: port, location, who reaches it, what checks it,
what limits it, what it logs and which fail2ban jail counts that line.

`rule_problems` is the rule a password or token check must keep (tests/configs/test_attack_surface.py enforces it
over every example site); `markdown` writes docs/security.md from the same rows.
"""

from __future__ import annotations

import ast
import configparser
import fnmatch
import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pi_stream.render import DEFAULT_PATHS, TEMPLATES_DIR
from pi_stream.site import Site

# --------------------------------------------------------------------------- nginx's syntax

TOKEN_RE = re.compile(r"""\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([{};])|((?:[^\s{};"'\\]|\\.|\$\{)+)""", re.S)


def unescape(text: str) -> str:
    """nginx's escapes in a token: \\" \\' \\\\ lose the backslash, \\t \\r \\n are control characters, any other stays."""
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "r": "\r", "n": "\n"}.get(m[1], m[1] if m[1] in "\"'\\" else m[0]), text)


def tokens(text: str, name: str) -> Iterator[str | None]:
    """Words (quotes removed), and "{", "}", ";" as themselves. A quoted word comes as a str too; None never."""
    position = 0
    while position < len(text):
        match = TOKEN_RE.match(text, position)
        if match is None:
            raise ValueError(f"{name}: cannot read nginx syntax at {text[position:position + 40]!r}")
        position = match.end()
        double, single, punct, word = match.groups()
        if punct:
            yield "\0" + punct  # marked: a quoted "{" is a word, this one is syntax
        elif double is not None or single is not None:
            yield unescape(double if double is not None else single)
        elif word is not None:
            yield unescape(word)


@dataclass
class Directive:
    name: str
    args: tuple[str, ...]
    block: list[Directive] | None = None
    source: str = ""

    def children(self, name: str) -> list[Directive]:
        return [d for d in self.block or () if d.name == name]

    def first(self, name: str) -> Directive | None:
        return next(iter(self.children(name)), None)


def parse(text: str, name: str, files: Mapping[str, bytes] | None = None) -> list[Directive]:
    """nginx config text as a tree of directives; `include` is replaced by the included files found in `files`
    (bundle paths, no leading "/"); an include matching none of them (mime.types, modules) is left out."""
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    for token in tokens(text, name):
        if token in ("\0;", "\0{"):
            if not words:
                raise ValueError(f"{name}: {token[1]} without a directive")
            directive = Directive(words[0], tuple(words[1:]), [] if token == "\0{" else None, name)
            words = []
            if directive.name == "include" and files is not None and directive.block is None:
                pattern = directive.args[0].lstrip("/")
                for path in sorted(p for p in files if fnmatch.fnmatch(p, pattern)):
                    stack[-1].extend(parse(files[path].decode(), path, files))
                continue
            stack[-1].append(directive)
            if directive.block is not None:
                stack.append(directive.block)
        elif token == "\0}":
            if words or len(stack) == 1:
                raise ValueError(f"{name}: unexpected }}")
            stack.pop()
        else:
            words.append(token)
    if words or len(stack) != 1:
        raise ValueError(f"{name}: unexpected end of file")
    return stack[0]


# --------------------------------------------------------------------------- nginx's semantics


def pcre(pattern: str) -> str:
    """An nginx (PCRE) regular expression for Python: named groups (?<name>...) become (?P<name>...)."""
    return re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """$name and ${name} replaced by their values; unknown variables are empty, as nginx's would mostly be."""
    return re.sub(r"\$\{?([A-Za-z0-9_]+)\}?", lambda m: variables.get(m[1], ""), text)


def map_value(block: Directive, variables: Mapping[str, str]) -> str:
    """What a `map` gives for these variables: an exact key first, then the regular expressions in order, else default."""
    value = substitute(block.args[0], variables)
    entries = [d for d in block.block or () if d.name not in ("hostnames", "volatile", "include")]
    for entry in entries:
        if entry.name not in ("default",) and not entry.name.startswith("~") and entry.name == value:
            return substitute(entry.args[0], variables)
    for entry in entries:
        if entry.name.startswith("~"):
            flags = re.I if entry.name.startswith("~*") else 0
            if re.search(pcre(entry.name.lstrip("~*")), value, flags):
                return substitute(entry.args[0], variables)
    default = next((d for d in entries if d.name == "default"), None)
    return substitute(default.args[0], variables) if default else ""


@dataclass
class Location:
    directive: Directive
    parents: tuple[Directive, ...]  # http, server, enclosing locations: innermost last

    @property
    def modifier(self) -> str:
        return self.directive.args[0] if len(self.directive.args) == 2 else ""

    @property
    def path(self) -> str:
        return self.directive.args[-1]

    @property
    def chain(self) -> tuple[Directive, ...]:
        return (*self.parents, self.directive)

    def inherited(self, name: str) -> list[Directive]:
        """An array directive as nginx inherits it: the innermost level that sets it, whole."""
        for level in reversed(self.chain):
            found = level.children(name)
            if found:
                return found
        return []

    def own(self, name: str) -> list[Directive]:
        """This location's directives of `name`, its `if` blocks' included."""
        found = self.directive.children(name)
        for block in self.directive.children("if"):
            found += block.children(name)
        return found

    def label(self) -> str:
        outer = [Location(p, ()).short() for p in self.parents if p.name == "location"]
        return " › ".join([*outer, self.short()])

    def short(self) -> str:
        """`= /auth/login`, `/static/`, `~ ^/hls/{camera}/{file}$`: named groups as {name}, to keep the table readable."""
        path = self.path
        if self.modifier in ("~", "~*"):
            path = collapse_groups(path)
        return f"`{self.modifier} {path}`" if self.modifier else f"`{path}`"


def collapse_groups(pattern: str) -> str:
    out, index = [], 0
    while index < len(pattern):
        match = re.compile(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>").match(pattern, index)
        if not match:
            out.append(pattern[index])
            index += 1
            continue
        depth, index = 1, match.end()
        while depth and index < len(pattern):
            depth += {"(": 1, ")": -1}.get(pattern[index], 0) if pattern[index - 1] != "\\" else 0
            index += 1
        out.append("{" + match[1].removeprefix("pi_stream_") + "}")
    return "".join(out)


def locations(block: Directive, parents: tuple[Directive, ...]) -> Iterator[Location]:
    for directive in block.children("location"):
        yield Location(directive, parents)
        yield from locations(directive, (*parents, directive))


def select(block: Directive, parents: tuple[Directive, ...], uri: str) -> tuple[Location | None, bool]:
    """The location nginx picks for `uri` among `block`'s (ngx_http_core_find_location): an exact match, else the
    longest prefix and its nested ones, then (unless that prefix is ^~) the regular expressions in order.
    Returns (location, final)."""
    own = [Location(d, parents) for d in block.children("location") if not d.args[-1].startswith("@")]
    for location in own:
        if location.modifier == "=" and location.path == uri:
            return location, True
    prefixes = [loc for loc in own if loc.modifier in ("", "^~") and uri.startswith(loc.path)]
    best = max(prefixes, key=lambda loc: len(loc.path), default=None)
    found = best
    if best:
        inner, final = select(best.directive, best.chain, uri)
        if final:
            return inner, True
        found = inner or best
        if best.modifier == "^~":
            return found, True
    for location in own:
        if location.modifier in ("~", "~*") and re.search(pcre(location.path), uri, re.I if location.modifier == "~*" else 0):
            inner, _ = select(location.directive, location.chain, uri)
            return inner or location, True
    return found, False


# --------------------------------------------------------------------------- what checks a location

PASSWORD = "password (login service)"
DVR_LOGIN = "DVR's own login"
DVR_HTTP_AUTH = "DVR's own HTTP auth (credentials on any path)"
MEDIA_TOKEN = "media token (secure_link)"
DVR_COOKIE = "DVR cookie (auth_request)"
DVR_WEBSOCKET = "DVR's WebSocket (its own session)"
SESSION = "signed cookie (login service)"
IDENTITY = "identity token (login service: OIDC or proxy JWT)"
# A guess at these can come right: each must be rate-limited, logged on failure in the auth log as an event a
# fail2ban filter matches, and counted by an enabled jail reading that log with that filter.
GUARDED = (PASSWORD, DVR_LOGIN, DVR_HTTP_AUTH, MEDIA_TOKEN, DVR_COOKIE, SESSION, IDENTITY)
# The status a failed check answers, which the auth log's `if=` must let through: a wrong password 401; a token
# or signed cookie that is there and does not pass 403 (a missing or expired one, 401 or 410, is a first visit
# or a browser left open, and is not counted).
# An identity the site does not know, or a token that does not pass (foreign audience or key, expired, a replayed
# state), is a 401 like a wrong password: the same jail counts both.
FAILURE_STATUS = {PASSWORD: "401", DVR_LOGIN: "401", DVR_HTTP_AUTH: "401", MEDIA_TOKEN: "403", DVR_COOKIE: "403", SESSION: "403",
                  IDENTITY: "401"}
REFUSED_TOKENS = (MEDIA_TOKEN, DVR_COOKIE, SESSION)

AUTH_SERVICE = TEMPLATES_DIR / "usr/local/lib/pi-stream/pi_stream_auth.py"
# The login service's routes that check a password (checked against its source by password_handlers()).
PASSWORD_ROUTES = {"login": "/auth/login", "dvr_login": "/auth/dvr/{dvr}/login"}
SESSION_ROUTES = ("/auth/session", "/auth/link", "/auth/logout", "/auth/dvr/{dvr}/check", "/auth/dvr/{dvr}/logout")
# The routes that check an identity provider's signed token (the OIDC callback, the proxy's JWT). /oidc/start checks
# nothing: it sends the browser to the provider.
IDENTITY_ROUTES = ("/auth/oidc/callback", "/auth/proxy", "/auth/dvr/{dvr}/oidc/callback", "/auth/dvr/{dvr}/proxy")


def password_handlers() -> set[str]:
    """The login service's methods that call its bcrypt check (password_ok)."""
    tree = ast.parse(AUTH_SERVICE.read_text(encoding="utf-8"))
    return {
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef) and function.name != "password_ok"
        for call in ast.walk(function)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "password_ok"
    }


def route_regex(route: str) -> str:
    return re.escape(route).replace(re.escape("{dvr}"), "[a-z0-9][a-z0-9_-]{0,31}")


def service_paths(location: Location, upstream_uri: str, routes, dvr_names, server: Directive, http: Directive) -> list[str]:
    """Which paths of the login service's `routes` this location passes on to it. Samples: each route for every DVR
    of the host and for one that is not (the route is the service's, whatever access.json names), and an exact
    location's own path when it is one of the routes."""
    samples = {route.format(dvr=name) for route in routes for name in (*dvr_names, "NAME")}
    if location.modifier == "=" and any(re.fullmatch(route_regex(r), location.path) for r in routes):
        samples.add(location.path)
    if upstream_uri:  # a fixed path: a sample reaches it if some request to the location makes it
        return sorted(s for s in samples if re.fullmatch(upstream_pattern(location, upstream_uri), s))
    # No URI: the request's own path goes on, so every sample path that nginx gives to this location.
    return sorted(s for s in samples if getattr(select(server, (http, server), s)[0], "directive", None) is location.directive)


def upstream_pattern(location: Location, upstream_uri: str) -> str:
    """proxy_pass http://unix:SOCKET:/auth/dvr/shed/$action as a regular expression of the paths it makes: a variable
    that is a named capture of the location's regex matches what that capture does, any other a path segment."""
    groups = dict(re.findall(r"\(\?<([A-Za-z0-9_]+)>((?:[^()]|\([^()]*\))*)\)", location.path)) if location.modifier else {}
    parts = re.split(r"\$\{?([A-Za-z0-9_]+)\}?", upstream_uri)
    # $is_args$args pass the query string on: nothing of the path.
    known = {"is_args": "", "args": "", **groups}
    return "".join(re.escape(part) if index % 2 == 0 else f"(?:{pcre(known.get(part, '[^/]+'))})" for index, part in enumerate(parts))


# --------------------------------------------------------------------------- one host

@dataclass
class Row:
    port: str
    location: str
    reach: str
    checks: tuple[str, ...]
    rate_limit: str = "none"
    logged: str = "—"
    jail: str = "—"
    problems: tuple[str, ...] = ()
    server_name: str = ""


class Host:
    """One host's rendered files, read."""

    def __init__(self, name: str, files: Mapping[str, bytes], site: Site) -> None:
        self.name, self.files, self.site = name, files, site
        top = parse(self.text("etc/nginx/nginx.conf"), "etc/nginx/nginx.conf", self.files)
        self.top = Directive("main", (), top)
        self.http = self.top.first("http")
        self.firewall = firewall_ports(self.text("etc/pi-stream/firewall.nft"))
        self.jails = configparser.ConfigParser(interpolation=None)
        self.jails.read_string(self.text("etc/fail2ban/jail.d/pi-stream.local"))
        self.filters = {}
        for path in sorted(p for p in self.files if fnmatch.fnmatch(p, "etc/fail2ban/filter.d/*.conf")):
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(self.text(path))
            self.filters[path.rsplit("/", 1)[1].removesuffix(".conf")] = parser["Definition"]["failregex"].strip().splitlines()
        self.dvrs = self.site.dvrs_on(self.name)
        self.tunnel = "etc/wireguard/pistream.conf" in self.files

    def text(self, path: str) -> str:
        return self.files[path].decode()

    # ------------------------------------------------------------ http

    def maps(self) -> dict[str, Directive]:
        return {d.args[1].lstrip("$"): d for d in self.http.children("map")}

    def zones(self) -> dict[str, str]:
        zones = {}
        for directive in self.http.children("limit_req_zone"):
            options = dict(a.split("=", 1) for a in directive.args[1:] if "=" in a)
            zones[options["zone"].split(":")[0]] = options.get("rate", "")
        return zones

    def rows(self) -> list[Row]:
        rows = []
        for server in self.http.children("server"):
            for location in locations(server, (self.http, server)):
                if location.path.startswith("@"):
                    continue
                rows.append(self.location_row(server, location))
        rows += self.other_rows(rows)
        return sorted(rows, key=lambda r: (port_key(r.port), r.server_name))  # stable: a server's locations in order

    def listens(self, server: Directive) -> list[tuple[str, int]]:
        found = []
        for listen in server.children("listen"):
            address, _, port = listen.args[0].rpartition(":") if not listen.args[0].isdigit() else ("", "", listen.args[0])
            found.append((address.strip("[]"), int(port)))
        return found

    def port_reach(self, address: str, port: int, proto: str = "tcp") -> str:
        if address and ipaddress.ip_address(address).is_loopback:
            return "this host (loopback)"
        reach = self.firewall.get((proto, port))
        if not reach:
            return "this host (firewall closed)"
        tunnel = " (LAN; the relays, through the tunnel)" if self.tunnel else ""
        return ", ".join(f"{who}{tunnel}" if who == "private addresses" else who for who in reach)

    def location_row(self, server: Directive, location: Location) -> Row:
        listens = self.listens(server)
        port = ", ".join(f"{p}" for _, p in listens)
        reach = "; ".join(dict.fromkeys(self.port_reach(a, p) for a, p in listens))
        if location.inherited("internal"):
            reach = "nginx itself (internal)"
        rules = location.inherited("allow") or location.inherited("deny")
        if rules:
            access = [f"{d.name} {d.args[0]}" for d in (*location.inherited("allow"), *location.inherited("deny"))]
            reach = f"{reach}: {', '.join(access)}"
        checks = self.checks(server, location)
        gated = bool(checks) and checks[0] == DVR_COOKIE
        row = Row(port, location.label(), reach, checks, server_name=server_name(server))
        row.rate_limit = self.rate_limit(location)
        refusals = self.failure_location(server, location, checks)
        if refusals is not location:
            refused = "; ".join(part for part in self.rate_limit(refusals).split("; ") if part.startswith("limit_req"))
            row.rate_limit += f"; refusals: {refused or 'none'}"
        logged, jails = [], []
        problems = []
        for check in checks:
            failing = self.failure_location(server, location, (check,))
            limit = self.rate_limit(failing)
            event, filters = self.logged(failing, check) if check in FAILURE_STATUS else ("", [])
            jail = [self.jail_of(f) for f in filters]
            if event:
                logged.append(f"`{event}`" + (f" ({', '.join(filters)})" if filters else " (no filter matches)"))
            jails += [j for j in jail if j]
            if check not in GUARDED or (gated and check != DVR_COOKIE) or location.inherited("internal"):
                continue  # behind the DVR cookie, only a viewer the login let through gets to guess; internal: nginx's own
            if "limit_req" not in limit:
                problems.append(f"{check}: no rate limit (limit_req)")
            if not event:
                problems.append(f"{check}: a failure ({FAILURE_STATUS[check]}) is not logged in the auth log")
            elif not filters:
                problems.append(f"{check}: the logged event matches no fail2ban filter")
            elif not any(jail):
                problems.append(f"{check}: no enabled jail reads the auth log with filter {', '.join(filters)}")
        row.logged = "; ".join(dict.fromkeys(logged)) or "—"
        row.jail = ", ".join(dict.fromkeys(jails)) or "—"
        row.problems = tuple(problems)
        return row

    def checks(self, server: Directive, location: Location) -> tuple[str, ...]:
        checks = []
        auth_request = location.inherited("auth_request")
        if auth_request and auth_request[0].args[0] != "off" and not location.inherited("internal"):
            checks.append(DVR_COOKIE)
        if location.own("secure_link"):
            checks.append(MEDIA_TOKEN)
        for proxy in location.own("proxy_pass"):
            target = proxy.args[0]
            socket = f"http://unix:{DEFAULT_PATHS['auth_socket']}:"
            if target.startswith(socket):
                dvr_names = [d.name for d in self.dvrs]
                uri = target[len(socket):]
                if service_paths(location, uri, PASSWORD_ROUTES.values(), dvr_names, server, self.http):
                    checks.append(PASSWORD)
                elif service_paths(location, uri, SESSION_ROUTES, dvr_names, server, self.http):
                    checks.append(SESSION)
                if service_paths(location, uri, IDENTITY_ROUTES, dvr_names, server, self.http):
                    checks.append(IDENTITY)
                continue
            dvr = self.dvr_of(server, target)
            if dvr is None:
                continue
            if any(port in (w.tls for w in dvr.websocket_ports) for _, port in self.listens(server)):
                checks.append(DVR_WEBSOCKET)
            elif location.modifier in ("", "^~", "=") and location.path in dvr.login_paths:
                checks.append(DVR_LOGIN)
            else:
                checks.append(DVR_HTTP_AUTH)
        return tuple(dict.fromkeys(checks)) or ("none",)

    def dvr_of(self, server: Directive, target: str):
        """The DVR (on a relay: the route to a Pi's pages or DVR) a server publishes, if `target` is its upstream."""
        host = re.match(r"https?://(\[[^\]]+\]|[^:/]+)", target)
        ports = {port for _, port in self.listens(server)}
        candidates = [d for d in self.dvrs if host and host[1].strip("[]") == d.address and ports & set(d.listen_ports())]
        named = [d for d in candidates if d.server_name and d.server_name == server_name(server)]
        return (named or candidates or [None])[0]

    def failure_location(self, server: Directive, location: Location, checks: tuple[str, ...]) -> Location:
        """Where a refused token ends up: the location a `rewrite ... last` or `error_page 403` sends it to."""
        if any(check in REFUSED_TOKENS for check in checks):
            for rewrite in location.own("rewrite"):
                target = select(server, (self.http, server), rewrite.args[1])[0]
                if target is not None:
                    return target
            for page in location.inherited("error_page"):
                if "403" in page.args and page.args[-1].startswith("/"):
                    return select(server, (self.http, server), page.args[-1])[0] or location
        return location

    def rate_limit(self, location: Location) -> str:
        parts, zones = [], self.zones()
        for limit in location.inherited("limit_req"):
            options = dict(a.split("=", 1) if "=" in a else (a, "") for a in limit.args)
            zone = options.get("zone", "")
            parts.append(f"limit_req {zone} ({zones.get(zone, '?')}, burst {options.get('burst', '0')})")
        for limit in location.inherited("limit_conn"):
            parts.append(f"limit_conn {limit.args[1]}")
        return "; ".join(parts) or "none"

    def logged(self, location: Location, check: str) -> tuple[str, list[str]]:
        """The auth-log event of a failure of `check` here, and the fail2ban filters that match its line ("" if none)."""
        variables = {
            "status": FAILURE_STATUS[check], "remote_addr": "192.0.2.7", "binary_remote_addr": "192.0.2.7",
            "time_iso8601": "2026-11-23T08:00:00+00:00", "http_authorization": "Basic Zm9vOmJhcg==",
        }
        sets = [d for level in location.chain for d in level.children("set")] + location.own("set")
        for directive in sets:  # outer first: the innermost assignment wins
            variables[directive.args[0].lstrip("$")] = substitute(directive.args[1], variables)
        maps, formats = self.maps(), {d.args[0]: "".join(d.args[1:]) for d in self.http.children("log_format")}
        for log in location.inherited("access_log"):
            if log.args[0] not in self.auth_logs() or len(log.args) < 2:
                continue
            condition = next((a[3:] for a in log.args[2:] if a.startswith("if=")), "")
            if condition:
                name = condition.lstrip("$")
                value = map_value(maps[name], variables) if name in maps else variables.get(name, "")
                if value in ("", "0"):
                    continue
            line = substitute(formats.get(log.args[1], ""), variables)
            event = variables.get("pi_stream_auth_event", "")
            return event or "(no event)", [name for name, regexes in self.filters.items() if banned(regexes, line) == "192.0.2.7"]
        return "", []

    def auth_logs(self) -> set[str]:
        return {self.jails[s].get("logpath", "") for s in self.jails.sections()} - {""}

    def jail_of(self, filter_name: str) -> str:
        for section in self.jails.sections():
            jail = self.jails[section]
            if jail.get("filter") == filter_name and jail.getboolean("enabled", False):
                return f"{section} ({jail.get('maxretry')} in {jail.get('findtime')} s, ban {jail.get('bantime')} s)"
        return ""

    # ------------------------------------------------------------ everything else that listens

    def other_rows(self, http_rows: list[Row]) -> list[Row]:
        rows = []
        served = {int(p) for row in http_rows for p in row.port.split(", ")}
        for (proto, port), reach in sorted(self.firewall.items(), key=lambda item: (item[0][1], item[0][0])):
            if proto == "tcp" and port in served:
                continue
            rows.append(self.service_row(proto, port, ", ".join(reach)))
        for server in self.top.first("rtmp").children("server") if self.top.first("rtmp") else ():
            for listen in server.children("listen"):
                address, _, port = listen.args[0].rpartition(":")
                if ("tcp", int(port)) in self.firewall:
                    continue
                rows.append(self.service_row("tcp", int(port), self.port_reach(address, int(port))))
        for port in self.ome_ports():
            if port not in self.firewall:
                rows.append(self.service_row(port[0], port[1], self.port_reach("", port[1], port[0])))
        return rows

    def service_row(self, proto: str, port: int, reach: str) -> Row:
        label = f"{port}/udp" if proto == "udp" else str(port)
        if proto == "tcp" and port == self.site.host(self.name).ssh_port:
            jail = "sshd (Debian's, journal)" if self.jails.has_section("sshd") else "—"
            return Row(label, "SSH", reach, ("sshd (the host's own keys and settings)",), "sshd's own (MaxStartups)",
                       "journal (sshd)", jail)
        if proto == "udp" and f"ListenPort = {port}" in self.files.get("etc/wireguard/pistream.conf", b"").decode():
            return Row(label, "WireGuard", reach, ("WireGuard key (the Pis' public keys)",), logged="— (silent to unknown keys)")
        rtmp = self.rtmp_server(port)
        if rtmp is not None:
            application = rtmp.first("application")
            rules = [f"{d.name} {' '.join(d.args)}" for d in application.block if d.name in ("allow", "deny")]
            return Row(label, f"RTMP `{application.args[0]}`", reach, ("source address (" + ", ".join(rules) + ")",))
        ome = dict((port, name) for name, port in self.ome_named_ports())
        if (proto, port) in ome:
            return Row(label, ome[(proto, port)], reach, ("none (behind nginx's token)" if "signalling" in ome[(proto, port)]
                                                         else "API token" if "API" in ome[(proto, port)] else "none",))
        return Row(label, "unexplained", reach, ("?",), problems=("a port the firewall opens that no row explains",))

    def rtmp_server(self, port: int) -> Directive | None:
        rtmp = self.top.first("rtmp")
        for server in rtmp.children("server") if rtmp else ():
            if any(listen.args[0].rpartition(":")[2] == str(port) for listen in server.children("listen")):
                return server
        return None

    def ome_named_ports(self) -> list[tuple[str, tuple[str, int]]]:
        if "etc/ovenmediaengine/Server.xml" not in self.files:
            return []
        root = ET.fromstring(self.files["etc/ovenmediaengine/Server.xml"])
        bind = root.find("Bind")
        named = [
            ("OvenMediaEngine API", ("tcp", int(bind.findtext("Managers/API/Port")))),
            ("OvenMediaEngine RTMP in", ("tcp", int(bind.findtext("Providers/RTMP/Port")))),
            ("OvenMediaEngine WebRTC signalling", ("tcp", int(bind.findtext("Publishers/WebRTC/Signalling/Port")))),
        ]
        for candidate in bind.findall("Publishers/WebRTC/IceCandidates/IceCandidate"):
            port, _, proto = candidate.text.rpartition(":")[2].partition("/")
            named.append(("OvenMediaEngine ICE", (proto or "udp", int(port))))
        relay = bind.findtext("Publishers/WebRTC/IceCandidates/TcpRelay")
        if relay:
            named.append(("OvenMediaEngine TURN relay (media)", ("tcp", int(relay.rpartition(":")[2]))))
        return named

    def ome_ports(self) -> list[tuple[str, int]]:
        return [port for _, port in self.ome_named_ports()]


def banned(regexes: list[str], line: str) -> str:
    """The address a fail2ban filter takes from a line (its date cut off first, as fail2ban does), or ""."""
    rest = re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", "", line)
    for regex in regexes:
        match = re.search(regex.strip().replace("<HOST>", r"(?P<host>[0-9A-Fa-f.:]+)"), rest)
        if match:
            return match["host"]
    return ""


def server_name(server: Directive) -> str:
    name = server.first("server_name")
    return " ".join(name.args) if name else ""


def port_key(port: str) -> tuple[int, ...]:
    return tuple(int(p.split("/")[0]) for p in port.split(", ") if p.split("/")[0].isdigit())


PRIVATE = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10"}
RULE_RE = re.compile(
    r'^(?:iifname "(?P<iif>[^"]+)" )?(?:ip6? saddr (?P<saddr>\{[^}]*\}|\S+) )?(?P<proto>tcp|udp) dport \{ (?P<ports>[^}]*) \} accept$'
)


def firewall_ports(ruleset: str) -> dict[tuple[str, int], list[str]]:
    """(protocol, port) -> who the input chain lets in: "anyone", "private addresses", or an interface and network."""
    ports: dict[tuple[str, int], list[str]] = {}
    for line in ruleset.splitlines():
        match = RULE_RE.match(line.strip())
        if not match:
            continue
        sources = set(match["saddr"].strip("{} ").split(", ")) if match["saddr"] else set()
        who = "anyone" if not sources else "private addresses" if sources <= PRIVATE else ", ".join(sorted(sources))
        if match["iif"]:
            who = f"{who} on {match['iif']}"
        for port in match["ports"].split(", "):
            reach = ports.setdefault((match["proto"], int(port)), [])
            if who not in reach:
                reach.append(who)
    return ports


# --------------------------------------------------------------------------- the document

COLUMNS = ("Port", "Location", "Reachable from", "Checked by", "Rate limit", "Logged as", "Jail")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        port = f"{row.port} ({row.server_name})" if row.server_name and row.server_name != "_" else row.port
        values = (port, row.location, row.reach, ", then ".join(row.checks), row.rate_limit, row.logged, row.jail)
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines)


INTRO = """\
# Every way in

Generated by `tests/configs/test_attack_surface.py` from the configs the current templates render for the
example sites in `tests/conftest.py` (nginx.conf with its includes, firewall.nft, rtmp.conf, OvenMediaEngine's
Server.xml, WireGuard, fail2ban's jail and filters). Do not edit it by hand: after a template change, run

    .venv/bin/pytest tests/configs/test_attack_surface.py --update-golden

and review the diff. The same test fails while this file differs from what the templates render.

The rule, enforced by that test on every host of every example site: a location an anonymous client reaches
whose check is a password or a token:

{guarded}

must (a) have a rate limit (`limit_req`; for a token, on the refusal path its failure is rewritten to), (b) write
a line to the auth log on failure, with an event a fail2ban filter matches, and (c) be counted by an enabled jail
that reads that log with that filter. A wrong password answers 401; a token or signed cookie that is there and
does not pass answers 403, and that is what must be logged (a missing or expired one, 401 or 410, is a first
visit or a browser left open). Behind the DVR cookie (`auth_request`), only viewers the login let through reach
the DVR's own checks; an `internal` location is reached only through nginx itself.

"Logged as" is the auth-log event written when the check fails, and in brackets the filters that match that
line (checked against each filter's regular expression). "this host (firewall closed)": the port is bound, but
only the host itself reaches it.
"""


def markdown(sections: list[tuple[str, list[Row]]]) -> str:
    parts = [INTRO.format(guarded="\n".join(f"- {g}" for g in GUARDED))]
    for title, rows in sections:
        parts.append(f"## {title}\n\n{table(rows)}\n")
    return "\n".join(parts)
