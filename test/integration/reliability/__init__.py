# The reliability suite (issue 3): real Apache Kafka, crashes, outages, ERP
# faults. A package on purpose: its conftest is then imported as
# `reliability.conftest` and never replaces the harness's `conftest` module
# (test/integration/conftest.py), which the other tests import by that name.
