"""budu's own netfilter rules, per network (not per container), through iptables as the host has
it (nf_tables or legacy backend alike).

    filter FORWARD     -> BUDU-FORWARD      isolation and accepts for budu bridges
    filter BUDU-ISOLATION                   "-o <every budu bridge> -j DROP" (docker's stage 2)
    filter INPUT       -> BUDU-INPUT        internal networks: nothing to the host but DNS
    nat    POSTROUTING -> BUDU-POSTROUTING  outbound masquerade, one rule per network
    raw    PREROUTING  -> BUDU-PREROUTING   drop 127.0.0.0/8 arriving on a bridge (the portmap
                                            plugin sets route_localnet there for 127.0.0.1 ports)

Published ports are the CNI portmap plugin's (CNI-HOSTPORT-* chains in nat).

Every rule names its bridge (-i/-o), so a network's rules are found and removed by that name
alone, whatever state a crash left.  Changes go through one iptables-restore --noflush, which
the nf_tables backend applies as one transaction.  sweep() removes the chains (budu's, and the
portmap plugin's shared ones) once nothing is left in them, and the iptables-nft tables those
made, once they hold no rule, no chain of their own and only ACCEPT policies: as if budu had
never run.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from budu.network.host import run

FORWARD, ISOLATION, INPUT, POSTROUTING, PREROUTING = (
    "BUDU-FORWARD", "BUDU-ISOLATION", "BUDU-INPUT", "BUDU-POSTROUTING", "BUDU-PREROUTING")
# (table, chain, the built-in chain that jumps to it or None, insert the jump first?)
CHAINS = (
    ("filter", FORWARD, "FORWARD", True),
    ("filter", ISOLATION, None, False),
    ("filter", INPUT, "INPUT", True),
    ("nat", POSTROUTING, "POSTROUTING", False),
    ("raw", PREROUTING, "PREROUTING", True),
)
OURS = {c for _, c, _, _ in CHAINS}
# the portmap plugin's shared chains: (table, chain, jumps into it from)
PORTMAP = (("nat", "CNI-HOSTPORT-DNAT", ("PREROUTING", "OUTPUT")),
           ("nat", "CNI-HOSTPORT-MASQ", ("POSTROUTING",)),
           ("nat", "CNI-HOSTPORT-SETMARK", ()))
TABLES = ("filter", "nat", "raw", "mangle")


@dataclass(frozen=True)
class NetRules:
    bridge: str
    subnet: str
    gateway: str
    internal: bool = False
    masquerade: bool = True
    dns: bool = False


@dataclass
class Ruleset:
    """iptables-save, parsed: per table, its chains and its rules ('-A CHAIN ...' lines)."""
    chains: dict[str, set[str]] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)

    def has_chain(self, table: str, chain: str) -> bool:
        return chain in self.chains.get(table, set())

    def chain_rules(self, table: str, chain: str) -> list[str]:
        prefix = f"-A {chain} "
        return [r for r in self.rules.get(table, []) if r.startswith(prefix)]

    def jumps_to(self, table: str, target: str) -> list[str]:
        return [r for r in self.rules.get(table, []) if _target(r) == target]


def _target(rule: str) -> str | None:
    words = shlex.split(rule)
    for i, w in enumerate(words[:-1]):
        if w in ("-j", "--jump", "-g", "--goto"):
            return words[i + 1]
    return None


def _names_bridge(rule: str, bridge: str) -> bool:
    words = shlex.split(rule)
    return any(w in ("-i", "-o", "--in-interface", "--out-interface") and words[i + 1] == bridge
               for i, w in enumerate(words[:-1]))


def _delete(rule: str) -> str:
    return "-D" + rule[2:]


def rules_for(n: NetRules) -> dict[str, list[str]]:
    """The lines that set a network up, per table ('-I' lines go first in their chain)."""
    b, s, g = n.bridge, n.subnet, n.gateway
    filt = [f"-A {ISOLATION} -o {b} -j DROP"]
    if n.internal:
        filt += [
            f"-I {FORWARD} -i {b} ! -o {b} -j DROP",
            f"-I {FORWARD} -o {b} ! -i {b} -j DROP",
            f"-A {FORWARD} -i {b} -o {b} -j ACCEPT",
            f"-A {INPUT} -i {b} -j DROP",
            f"-I {INPUT} -i {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ]
        if n.dns:
            filt += [f"-I {INPUT} -i {b} -d {g}/32 -p udp -m udp --dport 53 -j ACCEPT",
                     f"-I {INPUT} -i {b} -d {g}/32 -p tcp -m tcp --dport 53 -j ACCEPT"]
    else:
        filt += [
            # to another budu network: dropped, unless it is a published port (DNAT)
            f"-I {FORWARD} -i {b} ! -o {b} -m conntrack ! --ctstate DNAT -j {ISOLATION}",
            f"-A {FORWARD} -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A {FORWARD} -o {b} -m conntrack --ctstate DNAT -j ACCEPT",
            f"-A {FORWARD} -i {b} -j ACCEPT",
        ]
        if n.dns:
            filt += [f"-A {INPUT} -i {b} -d {g}/32 -p udp -m udp --dport 53 -j ACCEPT",
                     f"-A {INPUT} -i {b} -d {g}/32 -p tcp -m tcp --dport 53 -j ACCEPT"]
    nat = [f"-A {POSTROUTING} -s {s} ! -o {b} -j MASQUERADE"] if n.masquerade and not n.internal else []
    raw = [f"-A {PREROUTING} -i {b} -d 127.0.0.0/8 -j DROP"]
    return {"filter": filt, "nat": nat, "raw": raw}


class Firewall:
    def __init__(self, iptables: str = "iptables", nft: str = "nft") -> None:
        self.iptables = iptables
        self.nft = nft
        self._nf_tables: bool | None = None

    # --- reading and writing ---------------------------------------------------------------------

    def save(self) -> Ruleset:
        out = run([f"{self.iptables}-save"]).stdout
        rs = Ruleset()
        table = ""
        for line in out.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
                rs.chains.setdefault(table, set())
                rs.rules.setdefault(table, [])
            elif line.startswith(":") and table:
                rs.chains[table].add(line[1:].split()[0])
            elif line.startswith("-A ") and table:
                rs.rules[table].append(line)
        return rs

    def restore(self, changes: dict[str, list[str]]) -> None:
        text = ""
        for table in TABLES:
            lines = changes.get(table)
            if lines:
                text += f"*{table}\n" + "\n".join(lines) + "\nCOMMIT\n"
        if text:
            run([f"{self.iptables}-restore", "--noflush"], input=text)

    # --- per network -----------------------------------------------------------------------------

    def _removal(self, rs: Ruleset, bridge: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for table, chain, _, _ in CHAINS:
            for rule in rs.chain_rules(table, chain):
                if _names_bridge(rule, bridge):
                    out.setdefault(table, []).append(_delete(rule))
        return out

    def setup(self, n: NetRules) -> None:
        """Install a network's rules (replacing any it had), making budu's chains on first use."""
        rs = self.save()
        changes = self._removal(rs, n.bridge)
        for table, chain, parent, first in CHAINS:
            lines = changes.setdefault(table, [])
            if not rs.has_chain(table, chain):
                lines.insert(0, f":{chain} - [0:0]")
            if parent and not any(_target(r) == chain for r in rs.chain_rules(table, parent)):
                lines.append(f"-I {parent} 1 -j {chain}" if first else f"-A {parent} -j {chain}")
        for table, lines in rules_for(n).items():
            changes.setdefault(table, []).extend(lines)
        self.restore(changes)

    def teardown(self, bridge: str) -> None:
        """Remove every budu rule that names `bridge`; nothing to do is fine."""
        self.restore(self._removal(self.save(), bridge))

    # --- when nothing is left ----------------------------------------------------------------------

    def sweep(self) -> None:
        """Delete budu's chains, and the portmap plugin's shared ones, that hold no rule any more
        (with the jumps into them); then the iptables-nft tables this left empty."""
        rs = self.save()
        changes: dict[str, list[str]] = {}
        gone: set[tuple[str, str]] = set()

        def referred(table: str, chain: str, parents: Sequence[str]) -> bool:
            return any(r.split()[1] not in parents and (table, r.split()[1]) not in gone
                       for r in rs.jumps_to(table, chain))

        def drop(table: str, chain: str, parents: Sequence[str], max_rules: int = 0) -> bool:
            if (not rs.has_chain(table, chain) or len(rs.chain_rules(table, chain)) > max_rules
                    or referred(table, chain, parents)):
                return False
            lines = changes.setdefault(table, [])
            for parent in parents:
                lines += [_delete(r) for r in rs.chain_rules(table, parent) if _target(r) == chain]
            if rs.chain_rules(table, chain):
                lines.append(f"-F {chain}")
            lines.append(f"-X {chain}")
            gone.add((table, chain))
            return True

        for table, chain, parent, _ in CHAINS:   # FORWARD before ISOLATION, which it jumps to
            drop(table, chain, (parent,) if parent else ())
        (t, dnat, dnat_from), (_, masq, masq_from), (_, setmark, _) = PORTMAP
        if drop(t, dnat, dnat_from) or not rs.has_chain(t, dnat):
            # with no port forwarded, the mark-and-masquerade pair (one fixed rule each) goes too
            drop(t, masq, masq_from, max_rules=1)
            drop(t, setmark, (), max_rules=1)
        self.restore(changes)
        self.sweep_tables()

    def nf_tables(self) -> bool:
        if self._nf_tables is None:
            p = run([self.iptables, "--version"], check=False)
            self._nf_tables = "nf_tables" in p.stdout
        return self._nf_tables

    def sweep_tables(self) -> None:
        """nft tables named like iptables' that hold nothing (no rule, no set, no chain but
        built-in ones with an ACCEPT policy) behave as if absent: delete them."""
        if not self.nf_tables():
            return
        p = run([self.nft, "-j", "list", "ruleset"], check=False)
        if p.returncode != 0:
            return
        try:
            items = json.loads(p.stdout).get("nftables", [])
        except ValueError:
            return
        tables: dict[tuple[str, str], bool] = {}
        for item in items:
            for kind, obj in item.items():
                if kind == "metainfo" or not isinstance(obj, dict):
                    continue
                if kind == "table":
                    tables.setdefault((obj["family"], obj["name"]), True)
                    continue
                key = (obj.get("family"), obj.get("table"))
                if kind != "chain" or "hook" not in obj or obj.get("policy", "accept") != "accept":
                    tables[key] = False   # a rule, set, map, object, user chain or a DROP policy
        for (family, name), empty in sorted(tables.items()):
            if empty and family in ("ip", "ip6") and name in TABLES:
                run([self.nft, "delete", "table", family, name], check=False)

    def chains_left(self) -> Sequence[str]:
        """budu's chains still present (for tests and diagnostics)."""
        rs = self.save()
        return [c for t, c, _, _ in CHAINS if rs.has_chain(t, c)]

