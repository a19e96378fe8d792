"""The producer signing helper, `bridge sign` and `bridge validate`, without a local stack."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bridge.producer_signing import signed_headers
from bridge.service import Bridge
from bridge.signatures import verify_record

from bridge_local import events as ev
from bridge_local.cli import build_parser, main
from bridge_local.report import counted
from bridge_local.testevents import PLACEHOLDER_KEY
from tests.helpers import DEV_CONFIG, RECORD_TIMESTAMP, ROOT, FakeKeys, kafka_event, kafka_record

SECRET = b"payment-service-secret"
PAYMENT = b'{"payment_id": "p-1", "amount": 5.0, "currency": "EUR"}'


def _signed_payment(secret: bytes = SECRET) -> dict[str, Any]:
    headers, timestamp = signed_headers(secret, producer="payment-service", topic="payments", key=b"acct-1",
                                        value=PAYMENT, headers=[("event-type", b"PaymentCaptured"),
                                                                ("currency", b"EUR")],
                                        timestamp_ms=RECORD_TIMESTAMP)
    rec = kafka_record("payments", key="acct-1", value=PAYMENT, headers=[(n, v or b"") for n, v in headers])
    rec["timestamp"] = timestamp
    return rec


def test_a_record_signed_with_the_producer_helper_is_delivered_to_the_signed_only_ledger(
        make_bridge: Callable[..., Bridge], keys: FakeKeys) -> None:
    keys.keys["payment-service"] = SECRET
    report = make_bridge().handle(kafka_event([_signed_payment()]))
    assert report.summary["parked"] == {}
    assert report.summary["delivered"] == {"payments-ledger": 1}


def test_a_record_signed_with_another_key_is_parked(make_bridge: Callable[..., Bridge], keys: FakeKeys) -> None:
    keys.keys["payment-service"] = SECRET
    report = make_bridge().handle(kafka_event([_signed_payment(b"not-the-key")]))
    assert report.summary["parked"] == {"invalid_signature": 1}


def test_signed_headers_refuses_a_producer_header_naming_someone_else() -> None:
    with pytest.raises(ValueError, match="signed as 'payment-service'"):
        signed_headers(SECRET, producer="payment-service", topic="payments", key=None, value=b"{}",
                       headers=[("x-bridge-producer", b"order-service")])


def test_bridge_sign_prints_headers_that_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")  # a trailing newline from `echo` or an editor is not part of the key
    rc = main(["--config", str(DEV_CONFIG), "--state-dir", str(tmp_path), "sign", "--producer", "payment-service",
               "--topic", "payments", "--key", "acct-1", "--value", PAYMENT.decode(), "--header",
               "event-type=PaymentCaptured", "--secret-file", str(secret), "--timestamp", str(RECORD_TIMESTAMP)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    headers = [(n, v.encode()) for n, v in doc["headers"]]
    (signature,) = [v.decode() for n, v in headers if n == "x-bridge-signature"]
    assert doc["timestamp"] == RECORD_TIMESTAMP
    assert verify_record((SECRET,), signature, producer="payment-service", topic="payments",
                         timestamp=RECORD_TIMESTAMP, key=b"acct-1", value=PAYMENT, headers=headers,
                         signature_header="x-bridge-signature")


def test_bridge_sign_without_a_key_says_where_to_get_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--config", str(DEV_CONFIG), "--state-dir", str(tmp_path), "sign", "--producer", "payment-service",
               "--topic", "payments", "--value", "{}"])
    assert rc == 1
    assert "pass --secret-file FILE" in capsys.readouterr().err


def test_bridge_validate_checks_a_config_without_loading_the_cdk() -> None:
    # A fresh interpreter: the CDK (jsii and a Node process) is what makes synth take tens of seconds.
    script = ("import sys; from bridge_local.cli import main; rc = main(['validate', '--config', 'config/dev.yaml', "
              "'--events-dir', 'events']); print('CDK LOADED' if 'aws_cdk' in sys.modules or 'jsii' in sys.modules "
              "else 'no cdk'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "config/dev.yaml: valid" in proc.stdout
    assert "no cdk" in proc.stdout


def test_bridge_validate_reports_every_problem_one_per_line(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad_Name\n", encoding="utf-8")
    assert main(["validate", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "name: 'Bad_Name' is not a valid bridge name" in err
    assert "source: is required" in err


def test_bridge_validate_flags_a_stale_shipped_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events"
    shutil.copytree(ROOT / "events", events)
    doc = json.loads((events / "route-payments.json").read_text())
    doc["records"] = {k: v[:0] for k, v in doc["records"].items()}
    (events / "route-payments.json").write_text(json.dumps(doc))

    assert main(["validate", "--config", str(DEV_CONFIG), "--events-dir", str(events)]) == 1
    err = capsys.readouterr().err
    assert "route-payments.json: stale" in err
    assert "Fix: bridge events --out-dir" in err


def test_an_event_file_with_event_source_aws_self_managed_kafka_is_accepted(tmp_path: Path) -> None:
    # events/ holds MSK events only (the bridge refuses another source's): turn one into a self-managed one
    event = json.loads((ROOT / "events" / "route-order-lifecycle.json").read_text())
    event.pop("eventSourceArn", None)
    event["eventSource"] = "aws:SelfManagedKafka"
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(event))
    assert ev.load_event_file(path)["eventSource"] == "aws:SelfManagedKafka"


def test_signed_headers_add_a_unique_message_id_unless_given() -> None:
    def ids(**kw: Any) -> list[bytes | None]:
        headers, _ = signed_headers(SECRET, producer="payment-service", topic="payments", key=None, value=b"{}",
                                    **kw)
        return [v for n, v in headers if n == "x-bridge-message-id"]

    first, second = ids(), ids()
    assert len(first) == len(second) == 1
    assert first != second  # a replayed copy is recognised by it, so it must never repeat
    assert ids(message_id="order-42") == [b"order-42"]
    assert ids(headers=[("x-bridge-message-id", b"mine")]) == [b"mine"]


def _payments_records(tmp_path: Path) -> Path:
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in [
        {"topic": "payments", "key": "acct-1", "value": PAYMENT.decode(), "producer": "payment-service"},
        {"topic": "payments", "key": "acct-2", "value": PAYMENT.decode()},  # names no producer
    ]) + "\n", encoding="utf-8")
    return records


def test_make_event_signs_a_signing_producers_records_with_the_given_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make_bridge: Callable[..., Bridge], keys: FakeKeys) -> None:
    # given: records for the signed-only ledger, one naming its producer, and that producer's key in a file
    secret = tmp_path / "key"
    secret.write_bytes(SECRET)
    out = tmp_path / "event.json"
    # when: the console test event is made with the key
    rc = main(["--config", str(DEV_CONFIG), "--state-dir", str(tmp_path), "make-event",
               str(_payments_records(tmp_path)), "--secret-file", str(secret), "--out", str(out)])
    # then: the named producer's record is signed and delivered to the ledger; the command said the other parks
    assert rc == 0
    keys.keys["payment-service"] = SECRET
    report = make_bridge().handle(json.loads(out.read_text(encoding="utf-8")))
    assert report.summary["delivered"]["payments-ledger"] == 1
    assert report.summary["parked"] == {"unsigned": 1}
    captured = capsys.readouterr()
    assert "signed 1 record(s) as payment-service with --secret-file" in captured.out
    assert "1 record(s) go to payments-ledger unsigned" in captured.err


def test_make_event_without_a_key_says_which_records_the_function_parks_unsigned(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make_bridge: Callable[..., Bridge], keys: FakeKeys) -> None:
    # given: no --secret-file and no local stack; when: the event is written to stdout
    rc = main(["--config", str(DEV_CONFIG), "--state-dir", str(tmp_path), "make-event",
               str(_payments_records(tmp_path))])
    captured = capsys.readouterr()
    # then: the event is written (unsigned), and stderr says which records park, why, and the fix, in one line
    assert rc == 0
    keys.keys["payment-service"] = SECRET
    assert make_bridge().handle(json.loads(captured.out)).summary["parked"] == {"unsigned": 2}
    (line,) = captured.err.splitlines()
    assert line.startswith("bridge: warning: 2 record(s) go to payments-ledger unsigned")
    assert "no key was at hand for payment-service" in line
    assert "--secret-file FILE" in line
    assert "orders-bridge-dev/producers/payment-service/signing-key" in line


def test_make_event_refuses_a_topic_the_bridge_does_not_consume_naming_the_record_and_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # given: a records file whose second record misspells its topic
    records = tmp_path / "records.jsonl"
    records.write_text('{"topic": "orders", "value": 1}\n{"topic": "ordrs", "value": 2}\n', encoding="utf-8")
    out = tmp_path / "event.json"
    # when
    rc = main(["--config", str(DEV_CONFIG), "--state-dir", str(tmp_path), "make-event", str(records),
               "--out", str(out)])
    # then: no event (the mapping never sends one for a topic it does not read), and one line that says why
    assert rc == 1
    assert not out.exists()
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"bridge: error: {records}: record 2: topic 'ordrs' is not consumed by the bridge 'orders-bridge' "
                    "(orders, payments, inventory). Fix: one of those topics, or add it to source.topics")


def test_bridge_validate_with_events_dir_says_how_many_events_it_checked(capsys: pytest.CaptureFixture[str]) -> None:
    # given: the shipped events, in step with the config
    shipped = len([p for p in (ROOT / "events").glob("*.json") if p.name != "manifest.json"])

    # when
    assert main(["validate", "--config", str(DEV_CONFIG), "--events-dir", str(ROOT / "events")]) == 0

    # then: a line says what was checked, not silence
    out = capsys.readouterr().out
    assert f"{shipped} test events in {ROOT / 'events'} checked: all match the config" in out


def test_bridge_validate_counts_the_events_it_checked_when_some_are_stale(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events"
    shutil.copytree(ROOT / "events", events)
    (events / "fail-unsigned.json").unlink()

    assert main(["validate", "--config", str(DEV_CONFIG), "--events-dir", str(events), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["events_checked"] == len(list((ROOT / "events").glob("*.json"))) - 1  # manifest.json is no event
    assert [p.split(": ")[0] for p in doc["problems"]] == [str(events / "fail-unsigned.json")]


@pytest.mark.parametrize(("n", "noun", "expected"), [
    (1, "batch", "1 batch"), (2, "batch", "2 batches"), (0, "record", "0 records"), (1, "record", "1 record"),
    (1_000, "record", "1000 records"), (3, "topic-partition", "3 topic-partitions")])
def test_counts_are_printed_with_their_noun_in_the_right_number(n: int, noun: str, expected: str) -> None:
    assert counted(n, noun) == expected


def test_bridge_events_says_plainly_which_records_carry_placeholder_signatures_and_how_to_sign(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # when
    assert main(["--config", str(DEV_CONFIG), "--state-dir", str(tmp_path), "events", "--out-dir",
                 str(tmp_path / "ev")]) == 0

    # then
    out = capsys.readouterr().out
    assert "route-payments.json" in out.split("note:")[1]
    assert "carry PLACEHOLDER signatures" in out
    assert "bridge make-event RECORDS.jsonl --secret-file KEY" in out
    assert "bridge events --secret-file KEY" in out


def test_bridge_events_with_a_secret_file_signs_with_that_key_and_validate_still_matches(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make_bridge: Callable[..., Bridge], keys: FakeKeys) -> None:
    # given: a producer's key in a file
    key = tmp_path / "key"
    key.write_bytes(SECRET + b"\n")

    # when
    assert main(["--config", str(DEV_CONFIG), "--state-dir", str(tmp_path), "events", "--out-dir",
                 str(tmp_path / "ev"), "--secret-file", str(key)]) == 0

    # then: it says what it signed, and route-payments' record verifies with that key, not the placeholder
    out = capsys.readouterr().out
    assert "signed 2 records in fail-untrusted-producer.json, route-payments.json with --secret-file" in out
    assert "PLACEHOLDER" not in out
    event = json.loads((tmp_path / "ev" / "route-payments.json").read_text())
    record = ev.records_from_event(event)[0]
    signature = next(v for n, v in reversed(record.headers) if n == "x-bridge-signature")
    assert signature is not None
    signed = {"producer": "payment-service", "topic": record.topic, "timestamp": record.timestamp, "key": record.key,
              "value": record.value, "headers": record.headers, "signature_header": "x-bridge-signature"}
    assert verify_record((SECRET,), signature.decode(), **signed)
    assert not verify_record((PLACEHOLDER_KEY,), signature.decode(), **signed)
    # and: the function holding that key delivers it to the signed-only ledger
    keys.keys["payment-service"] = SECRET
    assert make_bridge().handle(event).summary["delivered"] == {"payments-ledger": 1}
    # and: validate takes the directory as matching the config, and says how many were signed with a real key
    assert main(["validate", "--config", str(DEV_CONFIG), "--events-dir", str(tmp_path / "ev")]) == 0
    assert "(2 of them signed with a real key instead of placeholder signatures)" in capsys.readouterr().out


def test_every_option_of_every_command_says_what_it_does_in_help() -> None:
    # given: the parser `bridge` runs
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    # then: `bridge COMMAND --help` leaves no option bare (a newcomer read `--kafka-port KAFKA_PORT` and nothing
    # else, and `--file` pointed at a source file instead of the format's documentation)
    bare = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, parser in commands.choices.items()
            for a in parser._actions if a.help is None and not isinstance(a, argparse._HelpAction)]
    assert bare == []
    # and: an option with a default says it (`poll --idle-seconds` is 3 s, the demo's 2 s; `--state-dir .bridge`)
    top = build_parser()
    silent = [f"{name} {'/'.join(a.option_strings)}"
              for name, parser in [("bridge", top), *commands.choices.items()] for a in parser._actions
              if a.default not in (None, False, argparse.SUPPRESS) and a.help not in (None, argparse.SUPPRESS)
              and not isinstance(a, argparse._SubParsersAction)
              and str(a.default) not in parser._get_formatter()._expand_help(a)]
    assert silent == []
    produce = commands.choices["produce"].format_help()
    assert "docs/local.md" in produce
    assert "bridge_local/events.py" not in produce


def test_bridge_status_with_no_stack_answers_not_running_with_exit_3(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # given: a state directory where nothing was started (or `bridge down` ran)
    # when / then: status answers on stdout, not as an error, and a script can tell it apart by the exit code
    assert main(["--state-dir", str(tmp_path), "status"]) == 3
    out = capsys.readouterr()
    assert out.out.startswith("not running: no local stack is recorded in ")
    assert "bridge up" in out.out
    assert out.err == ""
    assert main(["--state-dir", str(tmp_path), "status", "--json"]) == 3
    assert json.loads(capsys.readouterr().out) == {"running": False, "state_file": str(tmp_path / "local.json")}


def test_bridge_status_with_an_unreadable_state_file_is_still_an_error_with_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "local.json").write_text("{not json", encoding="utf-8")
    assert main(["--state-dir", str(tmp_path), "status"]) == 1
    assert "is not a valid state file" in capsys.readouterr().err
