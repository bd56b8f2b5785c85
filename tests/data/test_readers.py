"""Readers: every format on small synthetic files, bad input, and the public datasets."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from recpilot.data.readers import detect_format, read_dataset, read_events
from recpilot.data.schema import EVENT_COLUMNS
from recpilot.errors import ConfigError, DataError, EmptyDataError, SchemaError

# -- helpers --------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """$RECPILOT_DATA_DIR, or the ``shared/data`` folder beside the repository."""
    env = os.environ.get("RECPILOT_DATA_DIR")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


def dataset_file(*parts: str) -> Path:
    """A public dataset path; skips the test with the reason when it is absent."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"public dataset file {path} not found (set RECPILOT_DATA_DIR)")
    return path


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def ms(text: str) -> int:
    """ISO date/time (UTC when naive) -> epoch milliseconds."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


EVENTS_CSV = (
    "user_id,item_id,timestamp,event_type\n"
    "1,10,100,view\n"
    "1,11,101,click\n"
    "2,10,102,view\n"
    "2,10,102,view\n"  # exact duplicate: readers keep it
    "3,12,99,purchase\n"
)


@pytest.fixture
def events_csv(tmp_path: Path) -> Path:
    return write(tmp_path, "events.csv", EVENTS_CSV)


def assert_canonical(events: pl.DataFrame) -> None:
    assert events.columns == list(EVENT_COLUMNS)
    for name, dtype in EVENT_COLUMNS.items():
        if dtype is not None:
            assert events[name].dtype == dtype, name


# -- generic CSV ----------------------------------------------------------------------------------
def test_csv_reads_canonical_events_in_source_order(events_csv: Path) -> None:
    log = read_dataset(events_csv, "csv")
    assert_canonical(log.events)
    assert log.events["user_id"].dtype == pl.Int64
    assert log.events["user_id"].to_list() == [1, 1, 2, 2, 3]
    assert log.events["timestamp"].to_list() == [100_000, 101_000, 102_000, 102_000, 99_000]
    # columns.event_type is unset, but the file has an event_type column: it is used
    assert log.events["event_type"].to_list() == ["view", "click", "view", "view", "purchase"]
    assert log.events["value"].null_count() == 5
    assert log.has_timestamps
    assert log.items is None and log.users is None
    assert log.report.entries == []


def test_csv_via_read_events_and_folder_with_one_file(events_csv: Path) -> None:
    from recpilot.config import DataConfig

    log = read_events(DataConfig(path=events_csv.parent, format="csv"))
    assert log.events.height == 5
    assert log.source == str(events_csv)


def test_csv_mapping_separator_value_session(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "log.csv",
        "uid;sku;when;kind;amount;sess\nu1;A;1700000000123;buy;9.5;s1\nu2;B;1700000000456;;;\n",
    )
    log = read_dataset(
        path,
        "csv",
        separator=";",
        columns={
            "user_id": "uid",
            "item_id": "sku",
            "timestamp": "when",
            "timestamp_unit": "ms",
            "event_type": "kind",
            "value": "amount",
            "session_id": "sess",
            "default_event_type": "view",
        },
    )
    events = log.events
    assert_canonical(events)
    assert events["user_id"].to_list() == ["u1", "u2"]
    assert events["item_id"].dtype == pl.String
    assert events["timestamp"].to_list() == [1_700_000_000_123, 1_700_000_000_456]
    assert events["event_type"].to_list() == ["buy", "view"]
    assert events["value"].to_list() == [9.5, None]
    assert events["session_id"].to_list() == ["s1", None]
    assert log.report.as_dict() == {"filled empty event types in log.csv with 'view'": 1}


@pytest.mark.parametrize(
    ("unit", "raw", "expected"),
    [
        ("s", "1700000000", 1_700_000_000_000),
        ("s", "1700000000.25", 1_700_000_000_250),
        ("ms", "1700000000123", 1_700_000_000_123),
        ("us", "1700000000123456", 1_700_000_000_123),
        ("ns", "1700000000123456789", 1_700_000_000_123),
    ],
)
def test_csv_numeric_timestamp_units(tmp_path: Path, unit: str, raw: str, expected: int) -> None:
    path = write(tmp_path, "e.csv", f"user_id,item_id,timestamp\n1,2,{raw}\n")
    log = read_dataset(path, "csv", columns={"timestamp_unit": unit})
    assert log.events["timestamp"].to_list() == [expected]


def test_csv_iso_datetimes_with_and_without_offsets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "e.csv",
        "user_id,item_id,timestamp\n"
        "1,2,2024-05-01T12:30:00\n"
        "1,3,2024-05-01T12:30:00Z\n"
        "1,4,2024-05-01T14:30:00+02:00\n"
        "1,5,2024-05-02\n"
        "1,6,2024-05-01 12:30:00.250\n",
    )
    log = read_dataset(path, "csv", columns={"timestamp_unit": "datetime"})
    noon = ms("2024-05-01T12:30:00")
    assert log.events["timestamp"].to_list() == [
        noon,
        noon,
        noon,
        ms("2024-05-02T00:00:00"),
        noon + 250,
    ]


def test_csv_datetime_with_explicit_format(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,2,01/05/2024 12:30\n")
    log = read_dataset(
        path,
        "csv",
        columns={"timestamp_unit": "datetime", "timestamp_format": "%d/%m/%Y %H:%M"},
    )
    assert log.events["timestamp"].to_list() == [ms("2024-05-01T12:30:00")]


def test_csv_without_clock_uses_row_order(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id\na,1\nb,2\na,3\n")
    log = read_dataset(path, "csv", columns={"timestamp": None})
    assert not log.has_timestamps
    assert log.events["timestamp"].to_list() == [0, 1, 2]
    assert log.events["event_type"].to_list() == ["interaction"] * 3


def test_csv_ids_with_leading_zeros_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n007,1,1\n7,2,2\n")
    log = read_dataset(path, "csv")
    assert log.events["user_id"].to_list() == ["007", "7"]
    assert log.events["item_id"].dtype == pl.Int64


def test_csv_mixed_ids_are_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,B00X,1\n2,12345,2\n")
    log = read_dataset(path, "csv")
    assert log.events["item_id"].to_list() == ["B00X", "12345"]


def test_csv_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,2,3\n\n4,5,6\n\n")
    log = read_dataset(path, "csv")
    assert log.events.height == 2
    assert log.report.as_dict() == {"skipped blank lines in e.csv": 2}


def test_csv_non_utf8_encoding_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\nJosé,crème,1\n".encode("latin-1"))
    log = read_dataset(path, "csv", encoding="latin-1")
    assert log.events["user_id"].to_list() == ["José"]
    assert log.events["item_id"].to_list() == ["crème"]


# -- generic CSV: bad input -----------------------------------------------------------------------
def test_missing_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder") as exc:
        read_dataset(tmp_path / "nope.csv", "csv")
    assert exc.value.path == str(tmp_path / "nope.csv")
    from recpilot.config import DataConfig

    with pytest.raises(DataError, match=r"data.path is not set"):
        read_events(DataConfig(format="csv"))


def test_misnamed_column_names_file_expected_found_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "userId,item_id,timestamp\n1,2,3\n")
    with pytest.raises(SchemaError) as exc:
        read_dataset(path, "csv")
    message = str(exc.value)
    assert str(path) in message
    assert "'user_id'" in message
    assert "['userId', 'item_id', 'timestamp']" in message
    assert "did you mean 'userId'" in message
    assert "columns.user_id: userId" in message


def test_missing_column_without_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,when\n1,2,3\n")
    with pytest.raises(SchemaError, match=r"'timestamp' \(timestamp\) not found") as exc:
        read_dataset(path, "csv")
    assert "columns.timestamp" in str(exc.value)


def test_wrong_separator_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id;item_id;timestamp\n1;2;3\n")
    with pytest.raises(SchemaError, match="separated by ';'"):
        read_dataset(path, "csv")


def test_mapped_event_type_column_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp,type\n1,2,3,view\n")
    with pytest.raises(SchemaError, match="did you mean 'type'"):
        read_dataset(path, "csv", columns={"event_type": "typ"})


def test_unparsable_timestamp_names_line_value_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,2,100\n1,3,2024-05-01\n")
    with pytest.raises(DataError) as exc:
        read_dataset(path, "csv")
    assert exc.value.row == 3  # the header is line 1
    assert exc.value.path == str(path)
    message = str(exc.value)
    assert "'2024-05-01'" in message
    assert "seconds since 1970-01-01" in message
    assert "timestamp_unit: datetime" in message


def test_unparsable_datetime_names_line_and_hints_numeric(tmp_path: Path) -> None:
    path = write(
        tmp_path, "e.csv", "user_id,item_id,timestamp\n1,2,2024-01-01\n1,2,2024-01-02\n1,3,17000\n"
    )
    with pytest.raises(DataError, match="ISO 8601") as exc:
        read_dataset(path, "csv", columns={"timestamp_unit": "datetime"})
    assert exc.value.row == 4
    assert "'17000'" in str(exc.value)
    assert "timestamp_unit to s" in str(exc.value)


def test_datetime_with_wrong_format_names_format(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,2,2024-01-01\n")
    with pytest.raises(DataError, match="'%d/%m/%Y'") as exc:
        read_dataset(
            path, "csv", columns={"timestamp_unit": "datetime", "timestamp_format": "%d/%m/%Y"}
        )
    assert exc.value.row == 2


def test_missing_timestamp_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,2,5\n1,2,\n")
    with pytest.raises(DataError, match=r"timestamp .* is missing") as exc:
        read_dataset(path, "csv")
    assert exc.value.row == 3


@pytest.mark.parametrize("content", ["", "user_id,item_id,timestamp\n"])
def test_empty_csv_is_empty_data_error(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, "e.csv", content)
    with pytest.raises(EmptyDataError) as exc:
        read_dataset(path, "csv")
    assert str(path) in str(exc.value)


def test_csv_with_only_blank_lines_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n\n\n")
    with pytest.raises(EmptyDataError, match="no events"):
        read_dataset(path, "csv")


@pytest.mark.parametrize(
    ("line", "what"), [(",2,3", "user id"), ("1, ,3", "item id"), ('"",2,3', "user id")]
)
def test_null_or_empty_id_names_the_line(tmp_path: Path, line: str, what: str) -> None:
    path = write(tmp_path, "e.csv", f"user_id,item_id,timestamp\n1,2,3\n1,2,4\n{line}\n")
    with pytest.raises(DataError, match=f"{what} .*is missing") as exc:
        read_dataset(path, "csv")
    assert exc.value.row == 4


def test_non_numeric_value_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp,value\n1,2,3,4.5\n1,2,4,five\n")
    with pytest.raises(DataError, match="'five' is not a number") as exc:
        read_dataset(path, "csv")
    assert exc.value.row == 3


def test_error_count_of_further_bad_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp,value\n1,2,3,x\n1,2,4,y\n1,2,5,z\n")
    with pytest.raises(DataError, match="2 more rows with the same problem"):
        read_dataset(path, "csv")


def test_invalid_utf8_names_line_and_suggests_latin1(tmp_path: Path) -> None:
    content = b"user_id,item_id,timestamp\n1,a,1\n2,b,2\n3,caf\xe9,3\n"
    path = write(tmp_path, "e.csv", content)
    with pytest.raises(DataError) as exc:
        read_dataset(path, "csv")
    assert exc.value.row == 4
    assert exc.value.path == str(path)
    assert "encoding: latin-1" in str(exc.value)
    assert "e9" in str(exc.value)
    assert read_dataset(path, "csv", encoding="latin-1").events["item_id"][-1] == "café"


def test_quoted_newlines_keep_line_numbers_right(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "e.csv",
        'user_id,item_id,timestamp,note\n1,2,3,"two\nlines"\n1,2,4,ok\n1,2,oops,ok\n',
    )
    with pytest.raises(DataError) as exc:
        read_dataset(path, "csv")
    assert exc.value.row == 5


def test_ragged_line_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,2,3\n1,2,3,4\n")
    with pytest.raises(DataError, match="4 fields, the header has 3") as exc:
        read_dataset(path, "csv")
    assert exc.value.row == 3


def test_folder_must_hold_exactly_one_event_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no .csv/.tsv file"):
        read_dataset(tmp_path, "csv")
    write(tmp_path, "a.csv", EVENTS_CSV)
    write(tmp_path, "b.csv", EVENTS_CSV)
    with pytest.raises(DataError, match=r"2 csv files \(a.csv, b.csv\)"):
        read_dataset(tmp_path, "csv")


def test_bad_options_and_synthetic_format(events_csv: Path) -> None:
    with pytest.raises(ConfigError, match="separatr"):
        read_dataset(events_csv, "csv", separatr=";")
    with pytest.raises(ConfigError, match="unknown text encoding"):
        read_dataset(events_csv, "csv", encoding="utf-9")
    with pytest.raises(DataError, match="simulator"):
        read_dataset(events_csv, "synthetic")


# -- side tables ----------------------------------------------------------------------------------
def test_side_tables_duplicates_missing_and_catalogue_only(tmp_path: Path) -> None:
    events = write(tmp_path, "events.csv", "uid,sku,timestamp\n1,10,1\n1,11,2\n2,13,3\n2,13,4\n")
    items = write(
        tmp_path,
        "side/items.csv",
        "sku,title,price\n10,Ten,1.5\n11,Eleven,2.0\n11,Eleven again,3.0\n12,Twelve,4.0\n",
    )
    users = tmp_path / "side" / "users.parquet"
    pl.DataFrame({"uid": [1, 3], "country": ["NL", "FR"]}).write_parquet(users)
    log = read_dataset(
        events,
        "csv",
        columns={"user_id": "uid", "item_id": "sku"},
        items_path=items,
        users_path=users,
    )
    assert log.items is not None and log.users is not None
    assert log.items.columns == ["item_id", "title", "price"]
    assert log.items["item_id"].to_list() == [10, 11, 12]  # 12 has no events: fine
    assert log.items.filter(pl.col("item_id") == 11)["title"].item() == "Eleven"  # first kept
    assert log.users.columns == ["user_id", "country"]
    assert log.report.as_dict() == {
        "dropped rows of items.csv that repeat an item_id (kept the first)": 1,
        "events that reference items missing from items.csv": 2,
        "events that reference users missing from users.parquet": 2,
    }


def test_side_table_jsonl_and_string_ids(tmp_path: Path) -> None:
    events = write(tmp_path, "e.csv", "user_id,item_id,timestamp\na,x1,1\nb,7,2\n")
    items = write(tmp_path, "items.jsonl", '{"item_id": "x1", "title": "One"}\n{"item_id": 7}\n')
    log = read_dataset(events, "csv", items_path=items)
    assert log.items is not None
    assert log.items["item_id"].to_list() == ["x1", "7"]
    assert log.report.entries == []


def test_side_table_key_column_missing(tmp_path: Path) -> None:
    events = write(tmp_path, "e.csv", EVENTS_CSV)
    items = write(tmp_path, "items.csv", "itemid,title\n10,Ten\n")
    with pytest.raises(SchemaError, match="did you mean 'itemid'") as exc:
        read_dataset(events, "csv", items_path=items)
    assert str(items) in str(exc.value)


def test_side_table_key_not_integer_when_events_are(tmp_path: Path) -> None:
    events = write(tmp_path, "e.csv", EVENTS_CSV)
    items = write(tmp_path, "items.csv", "item_id,title\n10,Ten\nx11,Eleven\n")
    with pytest.raises(DataError, match="'x11' is not an integer") as exc:
        read_dataset(events, "csv", items_path=items)
    assert exc.value.row == 3


def test_side_table_missing_file_and_empty_key(tmp_path: Path) -> None:
    events = write(tmp_path, "e.csv", EVENTS_CSV)
    with pytest.raises(DataError, match="no such file"):
        read_dataset(events, "csv", items_path=tmp_path / "items.csv")
    items = write(tmp_path, "items.csv", "item_id,title\n10,Ten\n,None\n")
    with pytest.raises(DataError, match="is missing") as exc:
        read_dataset(events, "csv", items_path=items)
    assert exc.value.row == 3


# -- Parquet --------------------------------------------------------------------------------------
def test_parquet_keeps_types_and_converts_datetimes(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pl.DataFrame(
        {
            "user_id": ["a", "b"],
            "item_id": [1, 2],
            "timestamp": [datetime(2024, 5, 1, 12, 30), datetime(2024, 5, 2)],
            "rating": [4, None],
        }
    ).write_parquet(path)
    log = read_dataset(path, "parquet", columns={"value": "rating"})
    assert_canonical(log.events)
    assert log.events["user_id"].to_list() == ["a", "b"]
    assert log.events["item_id"].dtype == pl.Int64
    assert log.events["timestamp"].to_list() == [ms("2024-05-01T12:30:00"), ms("2024-05-02")]
    assert log.events["value"].to_list() == [4.0, None]


def test_parquet_numeric_timestamps_use_the_unit(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pl.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [1_700_000_000]}).write_parquet(path)
    assert read_dataset(path, "parquet").events["timestamp"].item() == 1_700_000_000_000


def test_parquet_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pl.DataFrame({"user": [1], "item_id": [2], "timestamp": [3]}).write_parquet(path)
    with pytest.raises(SchemaError, match=r"'user_id'.*\['user', 'item_id', 'timestamp'\]"):
        read_dataset(path, "parquet")

    pl.DataFrame({"user_id": [1, None], "item_id": [2, 3], "timestamp": [3, 4]}).write_parquet(path)
    with pytest.raises(DataError, match="row 2: user id") as exc:
        read_dataset(path, "parquet")
    assert exc.value.row == 2

    pl.DataFrame(
        {"user_id": [1, 2], "item_id": [2, 3], "timestamp": [3, 4], "value": ["1.5", "bad"]}
    ).write_parquet(path)
    with pytest.raises(DataError, match=r"row 2: value .*'bad' is not a number"):
        read_dataset(path, "parquet")

    pl.DataFrame({"user_id": [1], "item_id": [2], "timestamp": ["2024-13-45"]}).write_parquet(path)
    with pytest.raises(DataError, match="row 1: timestamp"):
        read_dataset(path, "parquet", columns={"timestamp_unit": "datetime"})

    pl.DataFrame(
        {"user_id": [], "item_id": [], "timestamp": []},
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64},
    ).write_parquet(path)
    with pytest.raises(EmptyDataError, match="no rows"):
        read_dataset(path, "parquet")

    write(tmp_path, "zero.parquet", b"")
    with pytest.raises(EmptyDataError, match="0 bytes"):
        read_dataset(tmp_path / "zero.parquet", "parquet")

    write(tmp_path, "text.parquet", "user_id,item_id\n")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_dataset(tmp_path / "text.parquet", "parquet")


# -- JSON lines -----------------------------------------------------------------------------------
def test_jsonl_reads_numbers_and_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "e.jsonl",
        '{"user_id": 1, "item_id": "a", "timestamp": "2024-05-01T00:00:00Z", "value": 2.5}\n'
        "\n"
        '{"user_id": 2, "item_id": "b", "timestamp": "2024-05-02T00:00:00Z", "extra": [1]}\n',
    )
    log = read_dataset(path, "jsonl", columns={"timestamp_unit": "datetime"})
    assert_canonical(log.events)
    assert log.events["user_id"].to_list() == [1, 2]
    assert log.events["item_id"].to_list() == ["a", "b"]
    assert log.events["value"].to_list() == [2.5, None]
    assert log.events["timestamp"].to_list() == [ms("2024-05-01"), ms("2024-05-02")]


def test_jsonl_bad_lines_are_located_past_blank_lines(tmp_path: Path) -> None:
    good = '{"user_id": 1, "item_id": 2, "timestamp": 3}\n'
    path = write(tmp_path, "e.jsonl", good + "\n" + good + '{"user_id": 1, "item_id": 2, \n')
    with pytest.raises(DataError, match="not valid JSON") as exc:
        read_dataset(path, "jsonl")
    assert exc.value.row == 4

    path = write(
        tmp_path, "e.jsonl", good + "\n" + '{"user_id": 1, "item_id": 2, "timestamp": "x"}\n'
    )
    with pytest.raises(DataError, match="'x' is not a number of seconds") as exc:
        read_dataset(path, "jsonl")
    assert exc.value.row == 3

    path = write(tmp_path, "e.jsonl", good + "\n\n" + '{"item_id": 2, "timestamp": 4}\n')
    with pytest.raises(DataError, match=r"user id .* is missing") as exc:
        read_dataset(path, "jsonl")
    assert exc.value.row == 4

    path = write(tmp_path, "e.jsonl", good + "[1, 2]\n")
    with pytest.raises(DataError, match="expected a JSON object per line") as exc:
        read_dataset(path, "jsonl")
    assert exc.value.row == 2


def test_jsonl_schema_empty_and_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "e.jsonl", '{"userid": 1, "item_id": 2, "timestamp": 3}\n')
    with pytest.raises(SchemaError, match="did you mean 'userid'"):
        read_dataset(path, "jsonl")
    for content in ("", "\n  \n"):
        path = write(tmp_path, "e.jsonl", content)
        with pytest.raises(EmptyDataError):
            read_dataset(path, "jsonl")
    path = write(
        tmp_path,
        "e.jsonl",
        b'{"user_id": 1, "item_id": 2, "timestamp": 3}\n{"user_id": "\xff", "item_id": 2, "timestamp": 3}\n',
    )
    with pytest.raises(DataError, match="encoding: latin-1") as exc:
        read_dataset(path, "jsonl")
    assert exc.value.row == 2


# -- MovieLens 100K -------------------------------------------------------------------------------
def _ml100k(folder: Path, data: str | None = None) -> Path:
    write(
        folder, "u.data", data or "1\t10\t4\t881250949\n2\t10\t3\t881250950\n2\t99\t5\t881250951\n"
    )
    flags = "|".join(["0"] * 19)
    action_comedy = "|".join("1" if i in (1, 5) else "0" for i in range(19))
    write(
        folder,
        "u.item",
        f"10|Caf\xe9 (1995)|01-Jan-1995||http://x|{action_comedy}\n11|Other|||http://y|{flags}\n".encode(
            "latin-1"
        ),
    )
    write(folder, "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    write(folder, "u.genre", "".join(f"g{i}|{i}\n" for i in range(19)) + "\n")
    return folder


def test_ml100k_reads_events_items_users(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml-100k")
    log = read_dataset(folder, "movielens-100k")
    assert_canonical(log.events)
    assert log.events["event_type"].unique().to_list() == ["rating"]
    assert log.events["value"].to_list() == [4.0, 3.0, 5.0]
    assert log.events["timestamp"][0] == 881_250_949_000
    assert log.items is not None and log.users is not None
    first = log.items.row(0, named=True)
    assert first["title"] == "Café (1995)"
    assert first["genres"] == ["g1", "g5"]  # names come from u.genre
    assert str(first["release_date"]) == "1995-01-01"
    assert log.items.row(1, named=True)["genres"] == []
    assert log.users.columns == ["user_id", "gender", "age", "occupation", "zip_code"]
    assert log.report.as_dict() == {"events that reference items missing from u.item": 1}
    assert detect_format(folder) == "movielens-100k"
    assert read_dataset(folder / "u.data").events.height == 3  # a file in the folder works too


def test_ml100k_bad_input(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "a", "1\t10\t4\t881250949\n2\t10\tfour\t881250950\n")
    with pytest.raises(DataError, match="'four' is not a number") as exc:
        read_dataset(folder, "movielens-100k")
    assert exc.value.row == 2 and exc.value.path == str(folder / "u.data")

    folder = _ml100k(tmp_path / "b", "1,10,4,881250949\n")
    with pytest.raises(SchemaError, match=r"expected 4 fields separated by '\\t'"):
        read_dataset(folder, "movielens-100k")

    folder = _ml100k(tmp_path / "c", "1\t10\t4\t881250949\n1\t10\t4\n")
    with pytest.raises(DataError, match=r"timestamp .* is missing") as exc:
        read_dataset(folder, "movielens-100k")
    assert exc.value.row == 2

    folder = _ml100k(tmp_path / "d", "1\t10\t4\t881250949\n1\t10\t4\t5\t6\n")
    with pytest.raises(DataError, match="5 fields") as exc:
        read_dataset(folder, "movielens-100k")
    assert exc.value.row == 2

    folder = _ml100k(tmp_path / "e", "1\t10\t4\t881250949\n")
    write(folder, "u.data", "")
    with pytest.raises(EmptyDataError):
        read_dataset(folder, "movielens-100k")

    (folder / "u.data").unlink()
    with pytest.raises(DataError, match=r"needs u.data"):
        read_dataset(folder, "movielens-100k")


# -- MovieLens 1M ---------------------------------------------------------------------------------
def _ml1m(
    folder: Path, ratings: str = "1::10::5::978300760\n1::11::3::978302109\n2::10::4::978301968\n"
) -> Path:
    write(folder, "ratings.dat", ratings)
    write(
        folder,
        "movies.dat",
        "10::Toy Story (1995)::Animation|Children's|Comedy\n11::Détour (1945)::Film-Noir\n"
        "11::Duplicate (1999)::Drama\n".encode("latin-1"),
    )
    write(folder, "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def test_ml1m_reads_dat_files(tmp_path: Path) -> None:
    folder = _ml1m(tmp_path / "ml-1m")
    log = read_dataset(folder, "movielens-1m")
    assert_canonical(log.events)
    assert log.events["user_id"].to_list() == [1, 1, 2]
    assert log.events["timestamp"][0] == 978_300_760_000
    assert log.items is not None and log.users is not None
    assert log.items["title"].to_list() == ["Toy Story (1995)", "Détour (1945)"]
    assert log.items["genres"][0].to_list() == ["Animation", "Children's", "Comedy"]
    assert log.users["occupation"].to_list() == ["K-12 student", "self-employed"]
    assert log.report.as_dict() == {
        "dropped rows of movies.dat that repeat an item_id (kept the first)": 1
    }
    assert detect_format(folder) == "movielens-1m"


def test_ml1m_bad_input(tmp_path: Path) -> None:
    folder = _ml1m(tmp_path / "a", "1::10::5::978300760\n1::11::3::yesterday\n")
    with pytest.raises(DataError, match="'yesterday'") as exc:
        read_dataset(folder, "movielens-1m")
    assert exc.value.row == 2

    folder = _ml1m(tmp_path / "b", "1::10::5::978300760\n::11::3::978300761\n")
    with pytest.raises(DataError, match=r"user id .* is missing") as exc:
        read_dataset(folder, "movielens-1m")
    assert exc.value.row == 2

    folder = tmp_path / "seq"
    write(folder, "ml-1m.txt", "1 1 2 3\n")
    write(folder, "movies.dat", "1::A::Drama\n")
    with pytest.raises(DataError, match="sequence-lines"):
        read_dataset(folder, "movielens-1m")

    empty = write(tmp_path, "empty/readme.md", "x").parent
    with pytest.raises(DataError, match=r"needs ratings.dat"):
        read_dataset(empty, "movielens-1m")


# -- MovieLens latest -----------------------------------------------------------------------------
def _ml_latest(folder: Path, ratings: str | None = None, tags: bool = True) -> Path:
    write(
        folder,
        "ratings.csv",
        ratings
        or "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n2,5,5.0,964982224\n",
    )
    write(
        folder,
        "movies.csv",
        "movieId,title,genres\n"
        '1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Grumpier Old Men (1995),(no genres listed)\n"
        "4,Unrated (2000),Drama\n",
    )
    if tags:
        write(
            folder,
            "tags.csv",
            "userId,movieId,tag,timestamp\n2,1,funny,1\n3,1,politics,2\n4,1,funny,3\n2,77,lost,4\n",
        )
    return folder


def test_ml_latest_reads_ratings_movies_and_tags(tmp_path: Path) -> None:
    folder = _ml_latest(tmp_path / "ml-latest-small")
    log = read_dataset(folder, "movielens-latest")
    assert_canonical(log.events)
    assert log.events["value"].to_list() == [4.0, 0.5, 5.0]
    assert log.items is not None
    assert log.items["title"][0] == "American President, The (1995)"
    assert log.items["genres"].to_list() == [["Comedy", "Drama", "Romance"], [], ["Drama"]]
    assert log.items["tags"].to_list() == [["funny", "politics"], [], []]
    assert log.report.as_dict() == {
        "tags in tags.csv on movies missing from movies.csv (not kept)": 1,
        "events that reference items missing from movies.csv": 1,
    }
    assert detect_format(folder) == "movielens-latest"


def test_ml_latest_tags_are_optional(tmp_path: Path) -> None:
    log = read_dataset(_ml_latest(tmp_path, tags=False), "movielens-latest")
    assert log.items is not None and "tags" not in log.items.columns


def test_ml_latest_bad_input(tmp_path: Path) -> None:
    folder = _ml_latest(tmp_path / "a", "userId,itemId,rating,timestamp\n1,1,4.0,964982703\n")
    with pytest.raises(SchemaError, match=r"'movieId'.*did you mean 'itemId'") as exc:
        read_dataset(folder, "movielens-latest")
    assert "ratings.csv" in str(exc.value)

    folder = _ml_latest(
        tmp_path / "b", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,x,1\n"
    )
    with pytest.raises(DataError, match=r"rating.*'x' is not a number") as exc:
        read_dataset(folder, "movielens-latest")
    assert exc.value.row == 3

    folder = _ml_latest(tmp_path / "c", "userId,movieId,rating,timestamp\n")
    with pytest.raises(EmptyDataError, match="header but no rows"):
        read_dataset(folder, "movielens-latest")


# -- sequence lines -------------------------------------------------------------------------------
def test_sequence_lines_positions_are_the_clock(tmp_path: Path) -> None:
    path = write(tmp_path, "seq.txt", "1 5 6 7\n2 6\r\n3  8\t9\n")
    log = read_dataset(path, "sequence-lines")
    assert_canonical(log.events)
    assert not log.has_timestamps
    assert log.events["user_id"].to_list() == [1, 1, 1, 2, 3, 3]
    assert log.events["item_id"].to_list() == [5, 6, 7, 6, 8, 9]
    assert log.events["timestamp"].to_list() == [0, 1, 2, 0, 0, 1]
    assert log.events["event_type"].unique().to_list() == ["interaction"]
    assert log.items is None
    assert detect_format(path) == "sequence-lines"


def test_sequence_lines_user_item_layout_continues_positions(tmp_path: Path) -> None:
    path = write(tmp_path, "seq.txt", "1 5\n1 6\n2 5\n1 7\n")
    log = read_dataset(path, "sequence-lines")
    assert log.events["timestamp"].to_list() == [0, 1, 0, 2]


def test_sequence_lines_string_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "seq.txt", "alice B0001 B0002\nbob B0002 0123\n")
    log = read_dataset(path, "sequence-lines")
    assert log.events["user_id"].dtype == pl.String
    assert log.events["item_id"].to_list() == ["B0001", "B0002", "B0002", "0123"]


def test_sequence_lines_blank_lines_are_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "seq.txt", "1 5 6\n\n   \n2 7\n")
    log = read_dataset(path, "sequence-lines")
    assert log.events.height == 3
    assert log.report.as_dict() == {"skipped blank lines in seq.txt": 2}


def test_sequence_lines_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path, "seq.txt", "1 5 6\n2 7 8\n3 9 1O 11\n4 5\n")
    with pytest.raises(DataError, match="item id '1O' is not an integer") as exc:
        read_dataset(path, "sequence-lines")
    assert exc.value.row == 3

    path = write(tmp_path, "seq.txt", "1 5 6\n2\n")
    with pytest.raises(DataError, match="expected a user id followed by") as exc:
        read_dataset(path, "sequence-lines")
    assert exc.value.row == 2

    path = write(tmp_path, "seq.txt", "1,5,6\n")
    with pytest.raises(DataError, match="separated by spaces"):
        read_dataset(path, "sequence-lines")

    for content in ("", "\n\n"):
        path = write(tmp_path, "seq.txt", content)
        with pytest.raises(EmptyDataError):
            read_dataset(path, "sequence-lines")

    path = write(tmp_path, "seq.txt", b"1 2 3\n2 3 4\n3 \xff 5\n")
    with pytest.raises(DataError, match="encoding: latin-1") as exc:
        read_dataset(path, "sequence-lines")
    assert exc.value.row == 3

    write(tmp_path, "other.txt", "1 2\n")
    with pytest.raises(DataError, match=r"exactly one .txt"):
        read_dataset(tmp_path, "sequence-lines")


def test_sequence_lines_side_tables_from_id_maps(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    write(folder, "ml-1m.txt", "1 1 2\n2 2 3\n")
    write(folder, "sas_to_original_items.txt", "1 1198\n2 356\n3 9999\n")
    write(folder, "sas_to_original_users.txt", "1 5988\n2 5989\n")
    write(
        folder,
        "movies.dat",
        "356::Forrest Gump (1994)::Comedy|Romance|War\n1198::Raiders (1981)::Action\n".encode(
            "latin-1"
        ),
    )
    write(folder, "users.dat", "5988::M::25::15::94022\n5989::F::1::10::74114\n")
    log = read_dataset(folder, "sequence-lines")
    assert log.items is not None and log.users is not None
    assert log.items.columns == ["item_id", "original_id", "title", "genres"]
    assert log.items["title"].to_list() == ["Raiders (1981)", "Forrest Gump (1994)", None]
    assert log.users["occupation"].to_list() == ["scientist", "K-12 student"]
    assert log.report.as_dict() == {
        "items of sas_to_original_items.txt missing from movies.dat (no title)": 1
    }


# -- public datasets ------------------------------------------------------------------------------
@pytest.mark.dataset
def test_dataset_ml100k() -> None:
    log = read_dataset(dataset_file("ml-100k", "u.data").parent, "movielens-100k")
    summary = log.summary()
    assert (summary["n_events"], summary["n_users"], summary["n_items"]) == (100_000, 943, 1682)
    assert log.items is not None and log.users is not None
    assert (log.items.height, log.users.height) == (1682, 943)
    assert log.items.filter(pl.col("item_id") == 1)["genres"].item().to_list() == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    assert log.report.entries == []
    assert log.events["value"].value_counts().sort("value")["count"].to_list() == [
        6110,
        11370,
        27145,
        34174,
        21201,
    ]


@pytest.mark.dataset
def test_dataset_ml_latest_small() -> None:
    log = read_dataset(dataset_file("ml-latest-small", "ratings.csv").parent, "movielens-latest")
    summary = log.summary()
    assert (summary["n_events"], summary["n_users"], summary["n_items"]) == (100_836, 610, 9724)
    assert log.items is not None
    assert log.items.height == 9742  # movies.csv: 9,742 movies, 9,724 of them rated
    assert log.items.filter(pl.col("tags").list.len() > 0).height == 1572
    # 3,683 tag rows; 3,579 distinct (movie, tag) pairs are kept
    assert log.items["tags"].list.len().sum() == 3579
    assert log.report.entries == []


@pytest.mark.dataset
def test_dataset_ml1m_sequences() -> None:
    folder = dataset_file("ml-1m", "ml-1m.txt").parent
    log = read_dataset(folder, "sequence-lines")
    summary = log.summary()
    assert (summary["n_events"], summary["n_users"], summary["n_items"]) == (999_611, 6040, 3416)
    assert not log.has_timestamps
    assert log.items is not None and log.items["title"].null_count() == 0
    assert log.items.height == 3416
    assert log.users is not None and log.users["gender"].null_count() == 0
    assert log.report.entries == []
    with pytest.raises(DataError, match="sequence-lines"):
        read_dataset(folder, "movielens-1m")


@pytest.mark.dataset
def test_dataset_amazon_beauty() -> None:
    log = read_dataset(dataset_file("amazon-beauty", "Beauty.txt"), "sequence-lines")
    summary = log.summary()
    assert (summary["n_events"], summary["n_users"], summary["n_items"]) == (198_502, 22363, 12101)
    assert log.items is None
    lengths = log.events.group_by("user_id").len()["len"]
    assert (lengths.min(), lengths.max()) == (5, 204)


# -- more edge cases ------------------------------------------------------------------------------
def test_quoted_separator_and_detect_format_by_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", 'user_id,item_id,timestamp\n"a,b",1,2\n')
    assert read_dataset(path).events["user_id"].to_list() == ["a,b"]  # format from the suffix
    assert detect_format(path) == "csv"
    assert detect_format(write(tmp_path, "e.jsonl", "{}\n")) == "jsonl"
    assert detect_format(tmp_path / "e.jsonl") == "jsonl"
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(write(tmp_path, "e.xlsx", "x"))


def test_multi_character_separator_is_a_config_error(events_csv: Path) -> None:
    with pytest.raises(ConfigError, match="one character"):
        read_dataset(events_csv, "csv", separator="::")


def test_side_table_blank_lines_and_canonical_key_name(tmp_path: Path) -> None:
    events = write(tmp_path, "e.csv", "uid,sku,timestamp\n1,10,1\n")
    items = write(tmp_path, "items.tsv", "item_id\ttitle\n10\tTen\n\n11\tEleven\n")
    log = read_dataset(
        events, "csv", columns={"user_id": "uid", "item_id": "sku"}, items_path=items
    )
    assert log.items is not None and log.items["item_id"].to_list() == [10, 11]
    assert log.report.as_dict() == {"skipped blank lines in items.tsv": 1}


def test_headerless_blank_lines_are_counted(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path, "1\t10\t4\t881250949\n\n2\t10\t3\t881250950\n")
    log = read_dataset(folder, "movielens-100k")
    assert log.events.height == 2
    assert log.report.as_dict()["skipped blank lines in u.data"] == 1


def test_movielens_ids_must_be_integers(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "a", "1\t10\t4\t881250949\nx2\t10\t3\t881250950\n")
    with pytest.raises(DataError, match="'x2' is not an integer") as exc:
        read_dataset(folder, "movielens-100k")
    assert exc.value.row == 2

    folder = _ml1m(tmp_path / "b")
    write(folder, "movies.dat", "10::Ten::Drama\nten::Ten again::Drama\n")
    with pytest.raises(DataError, match="movie id 'ten' is not an integer") as exc:
        read_dataset(folder, "movielens-1m")
    assert exc.value.row == 2 and exc.value.path == str(folder / "movies.dat")


def test_parquet_categorical_ids_and_folder(tmp_path: Path) -> None:
    pl.DataFrame(
        {"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1.5, 2.0]},
        schema_overrides={"user_id": pl.Categorical},
    ).write_parquet(tmp_path / "events.parquet")
    log = read_dataset(tmp_path, "parquet")
    assert log.events["user_id"].dtype == pl.String
    assert log.events["timestamp"].to_list() == [1500, 2000]
