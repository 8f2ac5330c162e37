"""Reads keyledger's /metrics the way Prometheus does, with the official
Python client's parsers (the classic text format and OpenMetrics).
Usage: parse_metrics.py URL [TOKEN]. Prints every sample as JSON lines of
[name, labels, value]; exits 1 if either parser rejects the page."""

import json
import sys

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

url = sys.argv[1]
headers = {"Authorization": f"Bearer {sys.argv[2]}"} if len(sys.argv) > 2 else {}
response = requests.get(url, headers=headers, timeout=10)
if response.status_code != 200:
    sys.exit(f"GET /metrics answered {response.status_code}: {response.text}")
body = response.text
samples = []
for family in openmetrics_families(body):
    for sample in family.samples:
        samples.append([sample.name, sample.labels, sample.value, family.type])
classic = sum(len(f.samples) for f in text_families(body))
if classic == 0:
    sys.exit("the classic text parser found no samples")
for sample in samples:
    print(json.dumps(sample))
