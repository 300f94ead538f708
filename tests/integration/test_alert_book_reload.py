"""The alert book's reload at a start reads the open alerts and the resolved ones still
cooling down, not every alert ever raised: the filter applies to each alert's newest
version (real chDB engine, in a child process: one engine path per process), and a book
restored from them holds the same open alerts and the same cooldowns that still matter as
one restored from every alert. A restart with this reload gives the same changes as an
uninterrupted evaluation: tests/signals/test_signal_quality.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
N = 1_793_491_200  # 2026-11-01T00:00Z: the next hour to evaluate
HOUR = 3600

_SCRIPT = """
import json, sys
import clickhouse_connect
from streams.clickhouse.alerts import AlertStore
from streams.clickhouse.migrations import migrate
from streams.core.alerting.book import Alert, AlertBook

path, N = sys.argv[1], int(sys.argv[2])
H = 3600
client = clickhouse_connect.get_client(dsn="chdb://" + path)
migrate(client, "c2m")
store = AlertStore(client, "c2m")

def alert(name, version, state, hour):
    return Alert(name, version, "restock", state, "warning", (name,), "F1", ("F1",), "cups",
                 name, "", "", hour, hour + H, hour + H, 1.0, 2.0, 0.5)

# (alert, version, state, hour of the change), written hour by hour as the service does
changes = [
    ("A", 1, "open", N - 100 * H),                                  # still open
    ("B", 1, "open", N - 100 * H), ("B", 2, "resolved", N - 50 * H),  # cooled down
    ("C", 1, "open", N - 30 * H), ("C", 2, "resolved", N - 10 * H),   # still cooling down
    ("D", 1, "open", N - 60 * H), ("D", 2, "updated", N - 40 * H),
    ("D", 3, "resolved", N - 24 * H),            # its cooldown ends at N exactly: not needed
]
for name, version, state, hour in sorted(changes, key=lambda c: c[3]):
    store.write([(alert(name, version, state, hour), "m")], hour)
store.write([], N - H)  # the last hour evaluated
book = AlertBook(cooldown_hours=24)
last = store.last_evaluated()
bound = book.restore_bound(last + H)
everything = store.current_alerts()
needed = store.current_alerts(bound)
full, part = AlertBook(cooldown_hours=24), AlertBook(cooldown_hours=24)
full.restore(everything)
part.restore(needed)
print(json.dumps({
    "last": last, "bound": bound,
    "all": sorted([a.alert_id, a.version, a.state] for a in everything),
    "needed": sorted([a.alert_id, a.version, a.state] for a in needed),
    "open_same": full.open == part.open,
    "cooling_full": sorted([k[1][0], v] for k, v in full.cooldown_until.items() if v > N),
    "cooling_part": sorted([k[1][0], v] for k, v in part.cooldown_until.items()),
}))
"""


def test_reload_reads_open_alerts_and_those_cooling_down(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "chdb"), str(N)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout)
    assert got["last"] == N - HOUR and got["bound"] == N - 24 * HOUR
    assert got["all"] == [["A", 1, "open"], ["B", 2, "resolved"], ["C", 2, "resolved"],
                          ["D", 3, "resolved"]]
    # the newest version decides: D's older versions (open, updated) are not read as open
    assert got["needed"] == [["A", 1, "open"], ["C", 2, "resolved"]]
    assert got["open_same"]
    assert got["cooling_part"] == got["cooling_full"] == [["C", N + 14 * HOUR]]


_PRUNE = """
import json, sys
import clickhouse_connect
from streams.clickhouse.alerts import AlertStore
from streams.clickhouse.migrations import migrate
from streams.core.alerting.book import Alert, AlertBook

path, N = sys.argv[1], int(sys.argv[2])
H, D = 3600, 86400
client = clickhouse_connect.get_client(dsn="chdb://" + path)
migrate(client, "c2m")
store = AlertStore(client, "c2m")

def alert(name, version, state, hour):
    return Alert(name, version, "restock", state, "warning", (name,), "F1", ("F1",), "cups",
                 name, "", "", hour, hour + H, hour + H, 1.0, 2.0, 0.5)

changes = [
    ("A", 1, "open", N - 20 * D), ("A", 2, "updated", N - 19 * D),   # open for 20 days
    ("B", 1, "open", N - 20 * D), ("B", 2, "updated", N - 15 * D),
    ("B", 3, "resolved", N - 10 * D),                                 # resolved 10 days ago
    ("E", 1, "open", N - 9 * D), ("E", 2, "resolved", N - 7 * D - H),  # just before the bound
    ("C", 1, "open", N - 6 * D), ("C", 2, "resolved", N - 7 * D),      # at the bound: kept
    ("F", 1, "open", N - 2 * D), ("F", 2, "resolved", N - 10 * H),     # cooling down
]
# one insert per version, as the service writes hour by hour, and no merge before the
# prune: each version in a part of its own (an older version left by a prune would show)
client.command("ALTER TABLE c2m.alerts MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1")
for name, version, state, hour in sorted(changes, key=lambda c: c[3]):
    store.write([(alert(name, version, state, hour), "m")], hour)
store.write([], N - H)
parts = client.query("SELECT count() FROM system.parts WHERE database = 'c2m' "
                     "AND table = 'alerts' AND active").result_rows[0][0]
bound = AlertBook(cooldown_hours=24).restore_bound(N)
def current():
    return sorted([a.alert_id, a.version, a.state] for a in store.current_alerts())
def book(alerts):
    b = AlertBook(cooldown_hours=24)
    b.restore(alerts)
    return sorted(map(str, b.open.items())), sorted(map(str, b.cooldown_until.items()))
before, restored_before = current(), book(store.current_alerts(bound))
pruned = store.prune_resolved(N - 7 * D)
again = store.prune_resolved(N - 7 * D)
after = current()
left = client.query("SELECT sum(rows) FROM system.parts WHERE database = 'c2m' "
                    "AND table = 'alerts' AND active").result_rows[0][0]
client.command("ALTER TABLE c2m.alerts RESET SETTING max_bytes_to_merge_at_max_space_in_pool")
client.command("OPTIMIZE TABLE c2m.alerts FINAL")
merged = current()
print(json.dumps({
    "before": before, "after": after, "merged": merged, "pruned": pruned, "again": again,
    "rows_left": client.query("SELECT alert_id, count() FROM c2m.alerts "
                              "GROUP BY alert_id ORDER BY alert_id").result_rows,
    "history": client.query("SELECT count() FROM c2m.alert_history").result_rows[0][0],
    "same_book": book(store.current_alerts(bound)) == restored_before, "parts": parts,
    "left": left,
}))
"""


def test_resolved_alerts_leave_the_current_table_after_their_retention(tmp_path: Path) -> None:
    """``AlertStore.prune_resolved`` (the service's retention of resolved alerts): every
    version of an alert resolved before the bound leaves ``c2m.alerts`` (none shows
    through FINAL, also after a merge), open and later resolved ones stay, the history
    keeps every version, and the book a restart restores is the same as before."""
    out = subprocess.run(
        [sys.executable, "-c", _PRUNE, str(tmp_path / "chdb"), str(N)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout)
    assert got["before"] == [["A", 2, "updated"], ["B", 3, "resolved"], ["C", 2, "resolved"],
                             ["E", 2, "resolved"], ["F", 2, "resolved"]]
    kept = [["A", 2, "updated"], ["C", 2, "resolved"], ["F", 2, "resolved"]]
    assert got["parts"] == 11
    assert got["left"] == 3  # merged: one row per alert kept, no deleted row left
    assert got["pruned"] == 2 and got["again"] == 0
    assert got["after"] == got["merged"] == kept
    assert [r[0] for r in got["rows_left"]] == ["A", "C", "F"]
    assert got["history"] == 11
    assert got["same_book"]
