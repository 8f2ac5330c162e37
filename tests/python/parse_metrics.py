"""Reads keyledger's /metrics the way Prometheus does, with the official
Python client's parsers (the classic text format and OpenMetrics).
Usage: parse_metrics.py URL [TOKEN]. Prints every sample as JSON lines of
[name, labels, value]; exits 1 if either parser rejects the page."""

import json
import sys
import time

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

url = sys.argv[1]
headers = {"Authorization": f"Bearer {sys.argv[2]}"} if len(sys.argv) > 2 else {}
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def scrape(accept):
    for _ in range(3):
        response = requests.get(url, headers=dict(headers, Accept=accept), timeout=10)
        if response.status_code != 429:
            break
        # Rate limited as a public endpoint (a test may have flooded it).
        time.sleep(min(int(response.headers.get("Retry-After", "1")), 65))
    if response.status_code != 200:
        sys.exit(f"GET /metrics answered {response.status_code}: {response.text}")
    return response


# Prometheus asks for OpenMetrics first; a scraper that doesn't gets the
# classic text format. Each page must read correctly with its own parser.
openmetrics_page = scrape(OPENMETRICS)
if not openmetrics_page.headers["Content-Type"].startswith("application/openmetrics-text"):
    sys.exit(f"asked for OpenMetrics, got {openmetrics_page.headers['Content-Type']}")
samples = []
kinds = {}
for family in openmetrics_families(openmetrics_page.text):
    for sample in family.samples:
        samples.append([sample.name, sample.labels, sample.value, family.type])
        kinds[sample.name] = family.type
classic_page = scrape("*/*")
if not classic_page.headers["Content-Type"].startswith("text/plain; version=0.0.4"):
    sys.exit(f"a plain scrape got {classic_page.headers['Content-Type']}")
classic_kinds = {}
for family in text_families(classic_page.text):
    for sample in family.samples:
        classic_kinds[sample.name] = family.type
if not classic_kinds:
    sys.exit("the classic text parser found no samples")
for name, kind in kinds.items():
    # A sample first counted between the two scrapes may be in one page only.
    if name in classic_kinds and classic_kinds[name] != kind:
        sys.exit(f"{name} is a {kind} in OpenMetrics but a {classic_kinds[name]} in the classic format")
if not any(kind == "counter" and name.endswith("_total") for name, kind in classic_kinds.items()):
    sys.exit("the classic parser read no counter")
for sample in samples:
    print(json.dumps(sample))
