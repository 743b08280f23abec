#!/usr/bin/env python3
"""Writes docs/autobahn.md from an Autobahn|Testsuite fuzzingclient run (used by scripts/autobahn).

Reads the suite's index.json and, for each case that did not pass, its per-case JSON, and
writes the date, the command, totals by behavior and by closing behavior, totals per chapter,
and every case whose behavior or closing behavior is not OK, NON-STRICT or INFORMATIONAL,
with the suite's own description, expectation and result text.

Exit status 1 when a case is FAILED or UNIMPLEMENTED (behavior or closing behavior) or a
selected case has no result; 0 otherwise.
"""

import argparse
import datetime
import html
import json
import os
import re
import sys

PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")
FAILING = ("FAILED", "UNIMPLEMENTED")
# The order the suite's own report uses, then anything else it may say.
ORDER = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "WRONG CODE", "UNCLEAN",
         "FAILED BY CLIENT", "FAILED")


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def ordered(values):
    return sorted(values, key=lambda v: (ORDER.index(v) if v in ORDER else len(ORDER), v))


def text(value, limit=600):
    """Suite text (HTML with <br> line breaks) as one line of Markdown-safe prose."""
    if value is None:
        return ""
    s = re.sub(r"<br\s*/?>", " ", str(value), flags=re.I)
    s = html.unescape(re.sub(r"<[^>]+>", "", s))
    s = re.sub(r"\s+", " ", s).strip().replace("|", "\\|")
    return s if len(s) <= limit else s[: limit - 4] + " ..."


def events(value, limit=300):
    """Expected/observed event lists, e.g. [["message", "Hello", false]], shortened."""
    s = json.dumps(value, ensure_ascii=True)
    s = s if len(s) <= limit else s[: limit - 4] + " ..."
    return "`" + s.replace("`", "'") + "`"


def header(message, name):
    """One header's value out of a raw HTTP request or response text, or ''."""
    for line in str(message or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--expected", help="JSON {cases: [...], categories: {...}} of the selected cases")
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="scripts/autobahn")
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--suite", default="autobahntestsuite")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--reports", default="")
    ap.add_argument("--note", default="")
    args = ap.parse_args()

    with open(args.index) as f:
        index = json.load(f)
    outdir = os.path.dirname(os.path.abspath(args.index))
    expected, categories = [], {}
    if args.expected:
        with open(args.expected) as f:
            spec = json.load(f)
        expected, categories = spec["cases"], spec.get("categories", {})

    # One agent ("hubbub"); take them all should the spec ever name more.
    results = {}
    for agent, cases in index.items():
        for case_id, r in cases.items():
            results[case_id if len(index) == 1 else "%s %s" % (agent, case_id)] = r
    ids = sorted(results, key=lambda c: case_key(c.split()[-1]))
    missing = [c for c in expected if c not in results]

    by_behavior, by_close = {}, {}
    chapters = {}
    for c in ids:
        r = results[c]
        by_behavior[r["behavior"]] = by_behavior.get(r["behavior"], 0) + 1
        by_close[r["behaviorClose"]] = by_close.get(r["behaviorClose"], 0) + 1
        ch = chapters.setdefault(c.split()[-1].split(".")[0], {})
        ch[r["behavior"]] = ch.get(r["behavior"], 0) + 1
    problems = [c for c in ids
                if results[c]["behavior"] not in PASSING or results[c]["behaviorClose"] not in PASSING]
    failing = [c for c in ids
               if results[c]["behavior"] in FAILING or results[c]["behaviorClose"] in FAILING]

    details = {}
    for c in problems:
        try:
            with open(os.path.join(outdir, results[c]["reportfile"])) as f:
                details[c] = json.load(f)
        except (OSError, ValueError, KeyError):
            details[c] = {}

    out = []
    w = out.append
    w("# Autobahn|Testsuite (RFC 6455 conformance)")
    w("")
    w("Hubbub's WebSocket echo route `/ws/echo` (permessage-deflate on, as by default) against "
      "[Autobahn|Testsuite](https://github.com/crossbario/autobahn-testsuite) in fuzzingclient "
      "mode. Made by `scripts/autobahn`, which sets up the suite (Python 2.7) outside the "
      "repository, runs it and writes this file; the raw per-case reports stay out of git.")
    w("")
    w("| | |")
    w("| --- | --- |")
    finished = datetime.datetime.fromtimestamp(os.path.getmtime(args.index), datetime.timezone.utc)
    w("| date | %s (run finished) |" % finished.strftime("%Y-%m-%d %H:%M UTC"))
    w("| command | `%s` |" % args.command)
    w("| suite | %s, `wstest -m fuzzingclient` |" % args.suite)
    w("| server | `hubbub --max-payload 16MiB --queue-limit 64MiB --rate-messages 0 --rate-bytes 0`, "
      "commit %s |" % args.commit)
    w("| cases | %d run%s |" % (len(ids), ", %d selected" % len(expected) if expected else ""))
    if args.seconds is not None:
        w("| run time | %d min %02d s (wstest alone, %d cores) |" % (
            divmod(args.seconds, 60) + (os.cpu_count() or 1,)))
    if args.reports:
        w("| raw reports | `%s/index.html` (not committed) |" % args.reports)
    w("")
    verdict = "fails" if failing or missing else "passes"
    w("**Result: the run %s**: %d FAILED or UNIMPLEMENTED, %d with another outcome that is not "
      "OK, NON-STRICT or INFORMATIONAL%s." % (
          verdict, len(failing), len(problems) - len(failing),
          ", %d selected but not run" % len(missing) if missing else ""))
    if args.note:
        w("")
        w("**Note:** %s." % args.note)
    w("")
    w("## Totals")
    w("")
    w("| outcome | behavior | closing behavior |")
    w("| --- | ---: | ---: |")
    for v in ordered(set(by_behavior) | set(by_close)):
        w("| %s | %d | %d |" % (v, by_behavior.get(v, 0), by_close.get(v, 0)))
    w("| **total** | **%d** | **%d** |" % (sum(by_behavior.values()), sum(by_close.values())))
    w("")
    w("OK: as the RFC demands. NON-STRICT: allowed, though not the strictest reading (e.g. a "
      "message failed a little later than possible). INFORMATIONAL: no verdict, the suite only "
      "records what happened. UNIMPLEMENTED: a feature the case needs was not offered (e.g. "
      "permessage-deflate not negotiated). WRONG CODE, UNCLEAN, FAILED BY CLIENT (closing "
      "behavior only): a close code the RFC does not allow, no clean closing handshake, or the "
      "suite had to fail the connection itself.")
    w("")
    w("By chapter (behavior):")
    w("")
    cols = ordered(by_behavior)
    w("| chapter | cases | %s |" % " | ".join(cols))
    w("| --- | ---: | %s |" % " | ".join("---:" for _ in cols))
    for ch in sorted(chapters, key=int):
        name = categories.get(ch, "")
        w("| %s%s | %d | %s |" % (ch, " " + name if name else "", sum(chapters[ch].values()),
                                 " | ".join(str(chapters[ch].get(v, 0)) for v in cols)))
    w("")
    w("## Cases that are not OK, NON-STRICT or INFORMATIONAL")
    w("")
    if not problems and not missing:
        w("None.")
    if missing:
        w("Selected but without a result (wstest lost the server?): %s." %
          ", ".join(missing))
        w("")
    if problems:
        w("| case | behavior | closing behavior | close code from server | result |")
        w("| --- | --- | --- | --- | --- |")
        for c in problems:
            r = results[c]
            w("| %s | %s | %s | %s | %s |" % (c, r["behavior"], r["behaviorClose"],
                                             r.get("remoteCloseCode"),
                                             text(details[c].get("result"), 160)))
        w("")
    for c in problems:
        r, d = results[c], details[c]
        w("### Case %s: %s / %s" % (c, r["behavior"], r["behaviorClose"]))
        w("")
        w("- description: %s" % text(d.get("description")))
        w("- expectation: %s" % text(d.get("expectation")))
        w("- result: %s" % text(d.get("result")))
        w("- expected events: %s" % events(d.get("expected")))
        w("- observed events: %s" % events(d.get("received")))
        w("- closing: %s (expected %s)" % (text(d.get("resultClose")), events(d.get("expectedClose"))))
        w("- close codes: local %s, remote %s (reason %s); clean close: %s%s" % (
            d.get("localCloseCode"), d.get("remoteCloseCode", r.get("remoteCloseCode")),
            json.dumps(d.get("remoteCloseReason")), d.get("wasClean"),
            " (%s)" % text(d.get("wasNotCleanReason")) if d.get("wasNotCleanReason") else ""))
        offered = header(d.get("httpRequest"), "sec-websocket-extensions")
        if offered:
            w("- extensions offered: `%s`; accepted: `%s`" % (
                offered, header(d.get("httpResponse"), "sec-websocket-extensions") or "none"))
        w("")

    with open(args.out, "w") as f:
        f.write("\n".join(out).rstrip("\n") + "\n")

    print("%d cases: %s" % (len(ids), ", ".join("%s %d" % (v, by_behavior[v]) for v in ordered(by_behavior))))
    print("closing behavior: %s" % ", ".join("%s %d" % (v, by_close[v]) for v in ordered(by_close)))
    for c in problems:
        print("  %s: %s / %s" % (c, results[c]["behavior"], results[c]["behaviorClose"]))
    if missing:
        print("not run: %s" % ", ".join(missing))
    print("wrote %s" % args.out)
    return 1 if failing or missing else 0


if __name__ == "__main__":
    sys.exit(main())
