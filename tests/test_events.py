"""The contract reader: typed records, rejections with place and reason, the total order."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kabuguard.events import Rejection, expand_paths, read_file, total_order
from kabuguard.events.order import TotalOrder
from kabuguard.events.instants import parse_ts
from kabuguard.events.model import Account, Login, MarketBar, Order

LOGIN = {"type": "login", "event_id": "l1", "ts": "2025-03-21T09:14:03.120+09:00", "account_id": "A1",
         "session_id": "s1", "success": True, "ip": "126.1.2.3", "user_agent": "x", "device_id": "d1",
         "mfa": "sms", "channel": "web"}
BAR = {"type": "market_bar", "event_id": "b1", "ts": "2025-03-21T09:15:00+09:00", "symbol": "9999", "open": 1.0,
       "high": 1.0, "low": 1.0, "close": 1.0, "volume": 100}


def _lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_bad_lines_are_reported_with_place_and_reason_and_the_rest_is_read(tmp_path: Path) -> None:
    path = _lines(tmp_path / "e.jsonl", [
        LOGIN,
        "{not json",
        {**LOGIN, "event_id": "l2", "success": "yes"},
        {**LOGIN, "event_id": "l3", "ts": "2025-03-21T09:14:03"},
        {**LOGIN, "event_id": "l4", "type": "teleport"},
        {k: v for k, v in LOGIN.items() if k != "account_id"} | {"event_id": "l5"},
        {**LOGIN, "event_id": "l6"},
    ])
    items = list(read_file(path))
    events = [i for i in items if not isinstance(i, Rejection)]
    rejected = [i for i in items if isinstance(i, Rejection)]
    assert [e.event_id for e in events] == ["l1", "l6"]
    assert [r.line for r in rejected] == [2, 3, 4, 5, 6]
    assert all(r.file == str(path) for r in rejected)
    reasons = [r.reason for r in rejected]
    assert "invalid JSON" in reasons[0]
    assert "success" in reasons[1]
    assert "offset" in reasons[2]
    assert "teleport" in reasons[3]
    assert "account_id" in reasons[4]


def test_unknown_fields_are_kept_and_nulls_mean_absent(tmp_path: Path) -> None:
    path = _lines(tmp_path / "e.jsonl", [{**LOGIN, "risk_vendor_score": 0.3, "mfa": None}])
    (event,) = read_file(path)
    assert isinstance(event, Login)
    assert event.extra == {"risk_vendor_score": 0.3}
    assert event.mfa == "none"


def test_gzip_parquet_and_folders_read_the_same_records(tmp_path: Path) -> None:
    order = {"type": "order", "event_id": "o1", "ts": "2025-03-21T09:15:00+09:00", "order_id": "o1",
             "account_id": "A1", "symbol": "9999", "side": "buy", "qty": 100}
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(LOGIN) + "\n")
    table = pa.Table.from_pylist([{**order, "limit_price": None, "session_id": None}])
    pq.write_table(table, tmp_path / "b.parquet")
    (tmp_path / "ignored.txt").write_text("not an event file")
    files = expand_paths([tmp_path])
    assert [f.name for f in files] == ["a.jsonl.gz", "b.parquet"]
    events = [e for f in files for e in read_file(f)]
    assert isinstance(events[0], Login)
    assert isinstance(events[1], Order) and events[1].qty == 100 and events[1].limit_price is None


def test_total_order_compares_instants_not_strings_and_drops_duplicates(tmp_path: Path) -> None:
    # 09:00+09:00 is 00:00Z, earlier than 01:00Z even though the string sorts later.
    path = _lines(tmp_path / "e.jsonl", [
        {**LOGIN, "event_id": "late", "ts": "2025-03-21T01:00:00Z"},
        {**LOGIN, "event_id": "early", "ts": "2025-03-21T09:00:00+09:00"},
        {**LOGIN, "event_id": "tie-1", "ts": "2025-03-21T02:00:00Z"},
        {**LOGIN, "event_id": "tie-2", "ts": "2025-03-21T11:00:00+09:00"},
        {**LOGIN, "event_id": "early", "ts": "2025-03-21T03:00:00Z"},
    ])
    ordered = total_order(e for e in read_file(path) if not isinstance(e, Rejection))
    assert [e.event_id for e in ordered.events] == ["early", "late", "tie-1", "tie-2"]
    assert ordered.duplicates == 1


def test_an_event_is_its_id_at_its_firm_so_a_pooled_feeds_firms_may_number_alike(tmp_path: Path) -> None:
    """Firms number their events independently: pooled, two firms' `e-1` were one event and the
    second firm's was dropped as a duplicate (the service already keyed them per firm)."""
    path = _lines(tmp_path / "e.jsonl", [
        {**LOGIN, "event_id": "e-1", "firm": "firm-a"},
        {**LOGIN, "event_id": "e-1", "firm": "firm-b"},
        {**LOGIN, "event_id": "e-1", "firm": "firm-a", "ts": "2025-03-21T03:00:00Z"},
        {**LOGIN, "event_id": "e-1"},
        {**LOGIN, "event_id": "e-1", "firm": ""},  # an empty cell: no firm, the line above again
        {**BAR, "event_id": "b-1", "firm": "firm-a"},
        {**BAR, "event_id": "b-1", "firm": "firm-b"},  # the market's bar in each firm's export: one bar
    ])
    ordered = total_order(e for e in read_file(path) if not isinstance(e, Rejection))
    assert sorted((e.firm or "", e.event_id) for e in ordered.events) == [
        ("", "e-1"), ("firm-a", "b-1"), ("firm-a", "e-1"), ("firm-b", "e-1")]
    assert [e.firm for e in ordered.events if not e.firm] == [None]
    assert ordered.duplicates == 3


def test_sorting_in_runs_on_disk_gives_the_same_order_duplicates_and_fields(tmp_path: Path) -> None:
    # Ties and duplicates straddle the runs: a spill every 2 events cuts between them.
    rows = [{**LOGIN, "event_id": f"e{n % 7}", "ts": f"2025-03-21T0{n % 4}:00:00Z", "vendor": n}
            for n in range(23)]
    events = [e for e in read_file(_lines(tmp_path / "e.jsonl", rows)) if not isinstance(e, Rejection)]
    in_memory = total_order(events)
    with TotalOrder(spill_after=2, workdir=tmp_path) as order:
        order.extend(events)
        assert order.runs == 11
        spilled = list(order)
    assert spilled == in_memory.events
    assert [e.extra for e in spilled] == [e.extra for e in in_memory.events]
    assert order.duplicates == in_memory.duplicates == 16


def test_parquet_rejects_bad_rows_by_row_number_and_keeps_the_rest(tmp_path: Path) -> None:
    bar = {"type": "market_bar", "symbol": "9999", "open": 1.0, "high": 2.0, "low": 1.0, "close": 2.0, "volume": 10}
    rows = [{**bar, "event_id": "b1", "ts": "2025-03-21T09:01:00+09:00"},
            {**bar, "event_id": "b2", "ts": "2025-03-21T09:02:00"},  # no offset
            {**bar, "event_id": "b3", "ts": "2025-03-21T09:03:00Z", "volume": None},
            {**bar, "event_id": "b4", "ts": "2025-03-21T09:04:00.5-05:30"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bars.parquet")
    items = list(read_file(tmp_path / "bars.parquet"))
    assert [i.event_id for i in items if not isinstance(i, Rejection)] == ["b1", "b4"]
    assert [(r.line, "offset" in r.reason or "volume" in r.reason) for r in items if isinstance(r, Rejection)] == [(2, True), (3, True)]
    nan = {**bar, "event_id": "b5", "ts": "2025-03-21T09:05:00Z", "close": float("nan")}
    pq.write_table(pa.Table.from_pylist([nan, rows[0]]), tmp_path / "nan.parquet")
    read = list(read_file(tmp_path / "nan.parquet"))
    assert isinstance(read[0], Rejection) and "`close` must be a finite number" in read[0].reason
    assert read[1].event_id == "b1"  # the rest is read
    # 09:04:00.5 at -05:30 is 14:34:00.5 UTC.
    assert items[-1].ts_us == int(datetime(2025, 3, 21, 14, 34, 0, 500000, tzinfo=timezone.utc).timestamp() * 1_000_000)


def test_damaged_files_and_odd_lines_are_rejected_with_their_place_and_the_rest_is_read(tmp_path: Path) -> None:
    login = {"type": "login", "account_id": "A1", "session_id": "s", "success": True}
    lines = [json.dumps({**login, "event_id": f"l{n}", "ts": f"2025-03-21T09:{n % 60:02d}:00+09:00", "pad": "x" * 50})
             for n in range(3000)]
    good = tmp_path / "good.jsonl"
    good.write_text(lines[0] + "\n")
    damaged = tmp_path / "damaged.jsonl.gz"
    blob = bytearray(gzip.compress("\n".join(lines).encode()))
    blob[len(blob) // 2: len(blob) // 2 + 64] = bytes(64)  # a hole in the middle of the stream
    damaged.write_bytes(bytes(blob))
    odd = tmp_path / "odd.jsonl"
    odd.write_text("\n".join([
        "[" * 5000 + "]" * 5000,  # nested deeper than any decoder recurses
        json.dumps({**login, "event_id": "big", "ts": "2025-03-21T09:00:00+09:00", "note": 2**70}),
        json.dumps({**login, "event_id": "iso", "ts": "2025-03-21T09:00+09:00"}),  # ISO 8601, not RFC 3339
        json.dumps({**login, "event_id": "ok", "ts": "2025-03-21 09:00:00.5Z"}),
    ]) + "\n")
    items = [i for path in (good, damaged, odd) for i in read_file(path)]
    events = [i.event_id for i in items if not isinstance(i, Rejection)]
    rejections = [i for i in items if isinstance(i, Rejection)]
    assert events[0] == "l0" and events[-1] == "ok" and "l1" in events  # before the hole, and after the bad file
    [broken] = [r for r in rejections if r.file == str(damaged) and "unreadable file from here on" in r.reason]
    assert broken.line > 1  # where the stream broke, after the lines read before it
    assert [(r.line, r.reason.split(":")[0]) for r in rejections if r.file == str(odd)] == [
        (1, "JSON nested too deeply"), (2, "a field outside the contract holds an integer beyond 64 bits"),
        (3, "`ts` is ISO 8601 but not RFC 3339 (date, `T`, hh")]


def test_a_field_outside_the_contract_nested_past_the_limit_is_rejected_before_it_is_kept(tmp_path: Path) -> None:
    """Kept fields are decoded again deeper in the stack (a spilled sort, the service's log): one
    nested 982 deep was read, then crashed the replay's spilled sort and got the service's 500."""
    from kabuguard.replay import replay
    from kabuguard.service.app import create_app
    from kabuguard.service.auth import create_key
    from kabuguard.service.settings import Settings

    def line(event_id: str, depth: int) -> str:  # a login whose extra field `note` nests `depth` arrays
        login = {"event_id": event_id, "type": "login", "account_id": "A1", "session_id": "s1", "success": True,
                 "ip": "126.1.2.3", "ts": "2025-03-21T09:00:00+09:00"}
        return json.dumps(login)[:-1] + ', "note": ' + "[" * depth + "1" + "]" * depth + "}"

    lines = [line("kept", 32), line("deep", 33), line("deeper", 300)]
    path = tmp_path / "e.jsonl"
    path.write_text("".join(f"{text}\n" for text in lines))
    summary = replay([path], tmp_path / "run", quiet=True, spill_after=1)
    decided = [json.loads(line)["event_id"] for line in (tmp_path / "run" / "decisions.jsonl").open()]
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "run" / "rejected.jsonl").open()]
    assert decided == ["kept"] and summary.rejected == 2
    assert all("nests arrays or objects more than 32 deep" in r for r in reasons), reasons
    from fastapi.testclient import TestClient
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db"))
    key = create_key(app.state.service.db, "acme", "t")[1]
    with TestClient(app) as client:
        answer = client.post("/v1/events", content=lines[2], headers={"X-API-Key": key})
    assert answer.status_code == 422 and "more than 32 deep" in answer.json()["detail"]


def test_a_parquet_file_with_a_damaged_page_or_odd_columns_is_rejected_not_fatal(tmp_path: Path) -> None:
    bar = {"type": "market_bar", "symbol": "9999", "open": 1.0, "high": 2.0, "low": 1.0, "close": 2.0, "volume": 10}
    rows = [{**bar, "event_id": f"b{n}", "ts": "2025-03-21T09:01:00+09:00"} for n in range(20000)]
    path = tmp_path / "bars.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=5000, compression="none")
    third = pq.ParquetFile(path).metadata.row_group(2).column(0).data_page_offset
    blob = bytearray(path.read_bytes())
    blob[third: third + 4000] = b"\xff" * 4000  # garbage in the third row group's pages
    path.write_bytes(bytes(blob))
    items = list(read_file(path))
    [damaged] = [i for i in items if isinstance(i, Rejection)]
    assert damaged.line == 10_001 and "rows 10001 to 15000 (row group 2)" in damaged.reason
    assert len(items) == 15_001  # the row groups before and after it are read
    listed = tmp_path / "listed.parquet"
    pq.write_table(pa.Table.from_pylist([{**bar, "event_id": "x", "ts": "2025-03-21T09:01:00+09:00", "type": ["market_bar"]}]), listed)
    [rejected] = list(read_file(listed))
    assert isinstance(rejected, Rejection) and "type" in rejected.reason


def test_parquet_and_json_lines_accept_the_same_timestamps(tmp_path: Path) -> None:
    bar = {"type": "market_bar", "symbol": "9999", "open": 1.0, "high": 2.0, "low": 1.0, "close": 2.0, "volume": 10}
    stamps = ["2025-03-21T09:01:00+09:00", "2025-03-21T09:01+09:00", "2025-03-21T09:01:00+0900", "2025-03-21 09:01:00Z"]
    rows = [{**bar, "event_id": f"b{n}", "ts": ts} for n, ts in enumerate(stamps)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bars.parquet")
    (tmp_path / "bars.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    read = {name: [isinstance(i, Rejection) for i in read_file(tmp_path / name)] for name in ("bars.parquet", "bars.jsonl")}
    assert read["bars.parquet"] == read["bars.jsonl"] == [False, True, True, False]  # Arrow alone took all four


def test_values_no_account_or_price_can_have_are_rejected_naming_the_field(tmp_path: Path) -> None:
    """An empty account id got no decision and no rejection; a quantity past 64 bits crashed the
    on-disk sort; a negative price made a negative notional; 1e300 overflowed the size baselines."""
    order = {"type": "order", "event_id": "o", "ts": "2025-03-21T09:15:00+09:00", "order_id": "o",
             "account_id": "A1", "symbol": "7203", "side": "buy", "qty": 100, "limit_price": 2500.0}
    bad = [({"account_id": ""}, "account_id"), ({"qty": 2**64}, "qty"), ({"qty": -100}, "qty"),
           ({"qty": 0}, "qty"), ({"limit_price": -300.0}, "limit_price"), ({"limit_price": 1e300}, "limit_price")]
    path = _lines(tmp_path / "e.jsonl", [{**order, **change, "event_id": f"o{n}"} for n, (change, _) in enumerate(bad)]
                  + [order])
    items = list(read_file(path))
    rejected = [i for i in items if isinstance(i, Rejection)]
    assert [r.line for r in rejected] == list(range(1, len(bad) + 1))
    assert all(field in r.reason for r, (_, field) in zip(rejected, bad)), [r.reason for r in rejected]
    assert [i.event_id for i in items if not isinstance(i, Rejection)] == ["o"]


def test_rfc3339_offsets_lower_case_z_is_read_and_written_z_and_minutes_past_59_are_refused(tmp_path: Path) -> None:
    path = _lines(tmp_path / "e.jsonl", [{**LOGIN, "ts": "2025-03-21T00:14:03.120z"},
                                         {**LOGIN, "event_id": "l2", "ts": "2025-03-21T09:14:03+09:60"},
                                         {**LOGIN, "event_id": "l3", "ts": "2025-03-21T00:14:03z", "extra_field": 1}])
    first, second, third = read_file(path)
    assert isinstance(first, Login) and first.ts == "2025-03-21T00:14:03.120Z"
    assert first.ts_us == int(datetime(2025, 3, 21, 0, 14, 3, 120000, tzinfo=timezone.utc).timestamp() * 1e6)
    assert isinstance(second, Rejection) and "RFC 3339" in second.reason
    assert isinstance(third, Login) and third.ts == "2025-03-21T00:14:03Z"


def test_timestamps_before_1970_or_past_9999_are_rejected_alike_in_json_lines_and_parquet(tmp_path: Path) -> None:
    """Parquet took year 0000 (Arrow reads it) where a JSON line was refused, and `0001-01-01`
    placeholders were decided, then crashed the evaluation's calendar; so did a `9999-12-31`
    sentinel whose offset puts it in year 10000 in UTC (and the STIX export)."""
    rows = [{**LOGIN, "event_id": "old", "ts": "0000-06-01T00:00:00Z"},
            {**LOGIN, "event_id": "placeholder", "ts": "0001-01-01T00:00:00+09:00"},
            {**LOGIN, "event_id": "y1969", "ts": "1969-12-31T23:59:59Z"},
            {**LOGIN, "event_id": "y10000", "ts": "9999-12-31T23:59:59-05:00"},
            # ... and its last day: in JST (the STIX export) or rounded up (evaluate) it is 10000.
            {**LOGIN, "event_id": "last-day", "ts": "9999-12-31T00:00:00Z"}, LOGIN]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "e.parquet")
    for path in (_lines(tmp_path / "e.jsonl", rows), tmp_path / "e.parquet"):
        items = list(read_file(path))
        assert [i.line for i in items if isinstance(i, Rejection)] == [1, 2, 3, 4, 5], (path, items)
        assert [i.event_id for i in items if not isinstance(i, Rejection)] == ["l1"]


def test_whole_floats_in_json_lines_are_integers_as_in_parquet(tmp_path: Path) -> None:
    """pandas writes an integer column holding nulls as floats, in JSON as in Parquet: every bar
    of such a JSON export was rejected (`100.0`), where the same Parquet file was read. A bar's
    fractional volume is a coin's (0.35 BTC) and is read as it is."""
    bar = {"type": "market_bar", "ts": "2025-03-21T09:01:00+09:00", "symbol": "9999", "open": 1.0, "high": 2.0,
           "low": 1.0, "close": 2.0}
    rows = [{**bar, "event_id": "whole", "volume": 100.0}, {**bar, "event_id": "part", "volume": 1.5},
            {**LOGIN, "event_id": "extra", "volume": 1e20}, {**bar, "event_id": "huge", "volume": 2.0**63}]
    items = list(read_file(_lines(tmp_path / "e.jsonl", rows)))
    whole, part, extra, huge = items
    assert isinstance(huge, Rejection) and "volume" in huge.reason  # past 64 bits: the sort's spill refused it later
    assert isinstance(whole, MarketBar) and whole.volume == 100 and isinstance(whole.volume, int)
    assert isinstance(part, MarketBar) and part.volume == 1.5
    assert isinstance(extra, Login) and extra.extra == {"volume": 1e20}  # another type's field: kept as it is


def test_a_leap_second_is_read_as_the_last_microsecond_before_the_next_second(tmp_path: Path) -> None:
    """RFC 3339 allows `23:59:60`; it was rejected as no RFC 3339 timestamp."""
    rows = [{**LOGIN, "event_id": "after", "ts": "2017-01-01T00:00:00Z"},
            {**LOGIN, "event_id": "leap", "ts": "2016-12-31T23:59:60.500Z"},
            {**LOGIN, "event_id": "leap-jst", "ts": "2017-01-01T08:59:60+09:00"},
            {**LOGIN, "event_id": "before", "ts": "2016-12-31T23:59:59Z"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "e.parquet")
    for path in (_lines(tmp_path / "e.jsonl", rows), tmp_path / "e.parquet"):
        ordered = total_order(e for e in read_file(path) if not isinstance(e, Rejection)).events
        assert [e.event_id for e in ordered] == ["before", "leap", "leap-jst", "after"], path
        assert [e.ts for e in ordered[1:3]] == ["2016-12-31T23:59:59.999999Z", "2017-01-01T08:59:59.999999+09:00"]
        assert all(datetime.fromisoformat(e.ts) for e in ordered)  # what later readers parse


def test_an_account_with_an_unreadable_opened_at_or_last_login_at_is_rejected_naming_it(tmp_path: Path) -> None:
    """The detectors took an unreadable one as unknown (a young account's extra weight, or a
    dormancy, silently lost); now it is a rejected line, in JSON lines and Parquet alike."""
    account = {"type": "account", "event_id": "a", "ts": "2025-03-21T08:00:00+09:00", "account_id": "A1",
               "opened_at": "2019-04-01T09:00:00+09:00", "last_login_at": "1999-12-31T23:00:00Z", "cash": 0.0}
    bad = [({"opened_at": "2019-04-01"}, "opened_at"), ({"last_login_at": "last week"}, "last_login_at"),
           ({"opened_at": "2019-04-01T09:00:00"}, "opened_at")]
    blank = {**account, "event_id": "blank", "opened_at": ""}  # an export's empty cell: absent, as null is
    rows = [{**account, **change, "event_id": f"a{n}"} for n, (change, _) in enumerate(bad)] + [blank, account]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "e.parquet")
    for path in (_lines(tmp_path / "e.jsonl", rows), tmp_path / "e.parquet"):
        items = list(read_file(path))
        rejected = [i for i in items if isinstance(i, Rejection)]
        assert [r.line for r in rejected] == [1, 2, 3], (path, items)
        assert all(f"`{field}`" in r.reason for r, (_, field) in zip(rejected, bad)), [r.reason for r in rejected]
        assert [i.event_id for i in items if not isinstance(i, Rejection)] == ["blank", "a"]


def test_an_account_logged_before_its_times_were_checked_reads_back_as_that_version_read_it() -> None:
    """The embedded service rebuilds state from its log at start, and the console shows logged
    events: an account an earlier version logged with `opened_at: "2019-04-01"` stopped both."""
    import msgspec
    import pytest

    from kabuguard.events.model import Account, from_log

    logged = {"type": "account", "event_id": "a", "ts": "2025-03-01T09:00:00+09:00", "ts_us": 1, "account_id": "A1",
              "opened_at": "2019-04-01", "last_login_at": "2024-12-30T18:00:00+09:00",
              "holdings": [{"symbol": "7203", "qty": 100}], "cash": 5.0}
    event = from_log(msgspec.msgpack.encode(logged))
    assert isinstance(event, Account) and event.opened_at is None  # unknown, as it was read then
    assert event.last_login_at == logged["last_login_at"] and event.holdings[0].qty == 100 and event.cash == 5.0
    with pytest.raises(msgspec.ValidationError):  # anything else that no longer reads is still an error
        from_log(msgspec.msgpack.encode({**logged, "type": "login"}))


def test_an_ipv6_zone_is_not_part_of_the_address(tmp_path: Path) -> None:
    """`2406:da14::5%eth0` was a key of its own and looked up as no network, unless the same /48
    had been seen without the zone first: the network depended on the order events came in."""
    from kabuguard.netintel import NetIntel

    rows = [{**LOGIN, "ip": "2406:DA14::5%eth0"}, {**LOGIN, "event_id": "l2", "ip": "fe80::1%2"}]
    zoned, link_local = read_file(_lines(tmp_path / "e.jsonl", rows))
    assert zoned.ip == "2406:da14::5" and link_local.ip == "fe80::1"
    assert NetIntel().lookup(zoned.ip).kind == "hosting"  # on a fresh cache, nothing seen before
    assert NetIntel().lookup(link_local.ip).kind == "private"


def test_parquet_timestamp_columns_are_read_as_their_instants_and_local_times_refused(tmp_path: Path) -> None:
    """An export writing `opened_at` as a Parquet timestamp had every account rejected ("expected
    str"), where a timestamp `ts` was read."""
    utc = timezone.utc
    rows = [{"type": "account", "event_id": f"a{n}", "ts": datetime(2025, 3, 21, 8, tzinfo=utc), "account_id": "A1",
             "opened_at": datetime(1965, 4, 1, 9, tzinfo=utc), "last_login_at": datetime(2024, 1, 2, 3, tzinfo=utc),
             "cash": 0.0} for n in range(3)]
    rows[1]["opened_at"] = datetime(2019, 4, 1, 9)  # no time zone: a local time, no instant
    rows[2]["last_login_at"] = None
    table = pa.Table.from_pylist(rows[:1] + rows[2:])  # one file per column type: with and without a zone
    pq.write_table(table, tmp_path / "aware.parquet")
    pq.write_table(pa.Table.from_pylist(rows[1:2]), tmp_path / "local.parquet")
    first, third = read_file(tmp_path / "aware.parquet")
    assert isinstance(first, Account) and isinstance(third, Account)
    assert first.ts_us == int(datetime(2025, 3, 21, 8, tzinfo=utc).timestamp()) * 1_000_000
    assert parse_ts(first.opened_at) == int(datetime(1965, 4, 1, 9, tzinfo=utc).timestamp()) * 1_000_000
    assert parse_ts(first.last_login_at) == int(datetime(2024, 1, 2, 3, tzinfo=utc).timestamp()) * 1_000_000
    assert not third.last_login_at
    [local] = read_file(tmp_path / "local.parquet")
    assert isinstance(local, Rejection) and "`opened_at`" in local.reason


def test_parquet_from_pandas_keeps_whole_quantities_its_null_columns_made_floats(tmp_path: Path) -> None:
    """pandas stores an integer column with nulls (`qty` of a file mixing logins and orders) as
    floats: every order and bar of such a file was rejected ("Expected `int`, got `float`")."""
    order = {"type": "order", "event_id": "o1", "ts": "2025-03-21T09:15:00+09:00", "order_id": "o1",
             "account_id": "A1", "symbol": "7203", "side": "buy", "qty": 100.0, "limit_price": 2500.0}
    bar = {"type": "market_bar", "event_id": "b1", "ts": "2025-03-21T09:16:00+09:00", "symbol": "7203",
           "open": 1.0, "high": 2.0, "low": 1.0, "close": 2.0, "volume": 300.0}
    rows = [LOGIN, order, bar, {**order, "event_id": "o2", "order_id": "o2", "qty": 1.5}]
    columns = list(dict.fromkeys(k for row in rows for k in row))  # absent fields null, as pandas writes them
    table = pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows])
    assert pa.types.is_floating(table.schema.field("qty").type)
    pq.write_table(table, tmp_path / "mixed.parquet")
    items = list(read_file(tmp_path / "mixed.parquet"))
    assert [type(i).__name__ for i in items] == ["Login", "Order", "MarketBar", "Rejection"]
    assert items[1].qty == 100 and isinstance(items[1].qty, int) and items[2].volume == 300
    assert items[3].line == 4 and "qty" in items[3].reason



def _login_table(ts: pa.Array, **columns: pa.Array) -> pa.Table:
    n = len(ts)
    fields = {k: pa.array([v] * n) for k, v in LOGIN.items() if k not in ("event_id", "ts")}
    return pa.table({**fields, "event_id": [f"l{i}" for i in range(n)], "ts": ts, **columns})


def test_parquet_timestamps_python_cannot_hold_are_read_as_their_instants_as_json_lines_are(tmp_path: Path) -> None:
    """Nanoseconds (pandas' unit), a zone pyarrow does not know (`JST`, `+0900`), 9999-12-31T20:00Z in
    Asia/Tokyo (year 10000 there) crashed the replay; an offset with seconds (Tokyo's +09:18:59 in
    1880, Monrovia's -00:44:30 in 1970) was written out and refused as not RFC 3339."""
    cases = [("2025-04-08T00:00:00.123456789Z", pa.timestamp("ns", "UTC"), 1744070400_123456789),
             ("2025-04-08T00:00:00Z", pa.timestamp("us", "JST"), 1744070400_000000),
             ("2025-04-08T00:00:01Z", pa.timestamp("ms", "+0900"), 1744070401_000),
             ("2025-04-08T00:00:02Z", pa.timestamp("s", "+09"), 1744070402),
             ("2025-04-08T00:00:03Z", pa.timestamp("us", "Z"), 1744070403_000000),
             ("9999-12-31T20:00:00Z", pa.timestamp("s", "Asia/Tokyo"), 253402300800 - 4 * 3600),
             ("1970-01-01T00:00:00Z", pa.timestamp("s", "Africa/Monrovia"), 0)]
    for n, (text, kind, value) in enumerate(cases):
        pq.write_table(_login_table(pa.array([value], pa.int64()).view(kind)), tmp_path / f"{n}.parquet")
        [event] = read_file(tmp_path / f"{n}.parquet")
        [line] = read_file(_lines(tmp_path / f"{n}.jsonl", [{**LOGIN, "ts": text}]))
        assert type(event) is type(line), (kind, event, line)  # the last day of 9999 is for the contract to say
        if isinstance(line, Login):
            assert event.ts_us == line.ts_us and parse_ts(event.ts) == line.ts_us  # digits past the sixth dropped
    account = {"type": "account", "event_id": "a", "ts": "2025-03-21T08:00:00+09:00", "account_id": "A1"}
    opened = [datetime(1880, 1, 1, tzinfo=timezone.utc), -1]  # Tokyo's +09:18:59; 1 ns before 1970
    for value, kind, text in zip(opened, (pa.timestamp("us", "Asia/Tokyo"), pa.timestamp("ns", "UTC")),
                                 ("1880-01-01T00:00:00Z", "1969-12-31T23:59:59.999999999Z")):
        table = pa.table({**{k: [v] for k, v in account.items()}, "opened_at": pa.array([value], kind)})
        pq.write_table(table, tmp_path / "a.parquet")
        [read] = read_file(tmp_path / "a.parquet")
        assert isinstance(read, Account) and parse_ts(read.opened_at) == parse_ts(text), read


def test_a_parquet_value_python_cannot_hold_rejects_its_row_naming_the_column_and_the_rest_is_read(tmp_path: Path) -> None:
    """Invalid UTF-8 in a string column (rejected from a JSON line) and nanosecond columns outside
    the contract crashed the replay with a traceback, for the whole run."""
    ts = pa.array(["2025-04-08T09:00:00+09:00"] * 3)
    accounts = pa.array([b"A1", b"A\xff1", b"A3"], pa.binary()).view(pa.string())
    nanos = pa.array([1744070400_123456789] * 3, pa.int64())
    table = _login_table(ts, account_id=accounts, exported_at=nanos.view(pa.timestamp("ns")),
                         held_for=nanos.view(pa.duration("ns")), at=nanos.view(pa.time64("ns")))
    pq.write_table(table, tmp_path / "e.parquet")
    first, second, third = read_file(tmp_path / "e.parquet")
    assert isinstance(second, Rejection) and second.line == 2 and "`account_id` cannot be read" in second.reason
    assert isinstance(first, Login) and isinstance(third, Login) and third.account_id == "A3"
    assert first.extra["exported_at"] == "2025-04-08T00:00:00.123456"  # a local time, as a JSON line's string


def test_parquet_times_at_the_edges_of_their_range_or_nested_are_read_or_rejected_never_crash(tmp_path: Path) -> None:
    """Nanoseconds within a microsecond of int64's least value, and nanosecond times inside a struct or
    list outside the contract, stopped the replay with a traceback; a time in year 67561 was read as
    2025 (Arrow writes the year in 16 bits)."""
    ts = pa.array(["2025-04-08T09:00:00+09:00"] * 2)
    nested = pa.struct([("at", pa.timestamp("ns", "UTC")), ("waits", pa.list_(pa.duration("ns")))])
    table = _login_table(ts, exported_at=pa.array([-2**63 + 1, 0], pa.int64()).view(pa.timestamp("ns", "UTC")),
                         meta=pa.array([{"at": 1744070400_123456789, "waits": [5000]}] * 2, nested))
    pq.write_table(table, tmp_path / "edges.parquet")
    first, second = read_file(tmp_path / "edges.parquet")
    assert isinstance(first, Login) and first.extra["exported_at"] == "1677-09-21T00:12:43.145224Z"
    assert second.extra["meta"]["at"] == datetime(2025, 4, 8, 0, 0, 0, 123456, tzinfo=timezone.utc)
    assert second.extra["meta"]["waits"][0].microseconds == 5
    year_67561 = pa.array([2069858912400000], pa.int64())  # 2025-03-21T09:00Z and 65,536 years, in ms
    pq.write_table(_login_table(year_67561.view(pa.timestamp("ms", "UTC"))), tmp_path / "far.parquet")
    [far] = read_file(tmp_path / "far.parquet")
    assert isinstance(far, Rejection) and "outside the years 1 to 9999" in far.reason, far


def test_a_holdings_whole_float_quantity_is_read_as_the_integer(tmp_path: Path) -> None:
    """pandas writes a list of structs with a null quantity as floats: `qty: 100.0` in a holding
    rejected the account, where a top-level 100.0 is read."""
    account = {"type": "account", "event_id": "a", "ts": "2025-03-21T08:00:00+09:00", "account_id": "A1",
               "holdings": [{"symbol": "7203", "qty": 100.0}, {"symbol": "9984", "qty": 200}]}
    pq.write_table(pa.Table.from_pylist([account]), tmp_path / "a.parquet")
    for path in (_lines(tmp_path / "a.jsonl", [account]), tmp_path / "a.parquet"):
        [read] = read_file(path)
        assert isinstance(read, Account) and [(h.symbol, h.qty) for h in read.holdings] == [("7203", 100), ("9984", 200)]
        assert all(type(h.qty) is int for h in read.holdings)
    [fraction] = read_file(_lines(tmp_path / "f.jsonl", [{**account, "holdings": [{"symbol": "7203", "qty": 1.5}]}]))
    assert isinstance(fraction, Rejection) and "qty" in fraction.reason


def test_a_parquet_file_naming_a_column_twice_is_rejected_naming_it(tmp_path: Path) -> None:
    """Two `ts` or `qty` columns stopped the replay with a KeyError; two columns outside the contract
    were silently merged into one (the last kept)."""
    login = _login_table(pa.array([LOGIN["ts"]]))
    tables = {"ts": login.append_column("ts", pa.array(["2025-03-21T10:00:00+09:00"])),
              "qty": login.append_column("qty", pa.array([100.0])).append_column("qty", pa.array([200.0])),
              "note": login.append_column("note", pa.array(["a"])).append_column("note", pa.array(["b"]))}
    for name, table in tables.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
        [rejected] = read_file(tmp_path / f"{name}.parquet")
        assert isinstance(rejected, Rejection) and rejected.line == 0, rejected
        assert f"column `{name}` appears more than once" in rejected.reason


def test_a_float_outside_a_rows_type_is_an_extra_kept_as_it_is_as_in_json_lines(tmp_path: Path) -> None:
    """A login's extra `volume: 1e20` was made an integer, as a bar's volume is, and the login
    rejected ("an integer beyond 64 bits"), where the same JSON line is read."""
    bar = {"type": "market_bar", "event_id": "b1", "ts": "2025-03-21T09:16:00+09:00", "symbol": "7203",
           "open": 1.0, "high": 2.0, "low": 1.0, "close": 2.0, "volume": 300.0}
    rows = [{**LOGIN, "volume": 1e20}, bar]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    pq.write_table(pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows]), tmp_path / "e.parquet")
    login, read_bar = read_file(tmp_path / "e.parquet")
    [line] = read_file(_lines(tmp_path / "e.jsonl", rows[:1]))
    assert isinstance(login, Login) and login.extra["volume"] == line.extra["volume"] == 1e20
    assert read_bar.volume == 300 and isinstance(read_bar.volume, int)


def test_a_whole_decimal_quantity_is_read_as_the_integer_and_a_fractional_one_rejected(tmp_path: Path) -> None:
    """A warehouse's decimal(38,0) `qty` was rejected ("Expected `int`, got `decimal`")."""
    from decimal import Decimal

    order = {"type": "order", "event_id": "o1", "ts": "2025-03-21T09:15:00+09:00", "order_id": "o1",
             "account_id": "A1", "symbol": "7203", "side": "buy"}
    quantities = [Decimal(100), Decimal("1.5"), Decimal(2**64)]
    table = pa.table({**{k: [v] * 3 for k, v in order.items()}, "qty": pa.array(quantities, pa.decimal128(38, 1))})
    pq.write_table(table, tmp_path / "e.parquet")
    whole, fraction, huge = read_file(tmp_path / "e.parquet")
    assert isinstance(whole, Order) and whole.qty == 100 and isinstance(whole.qty, int)
    assert isinstance(fraction, Rejection) and "qty" in fraction.reason
    assert isinstance(huge, Rejection) and "qty" in huge.reason  # past 64 bits, as in a JSON line
