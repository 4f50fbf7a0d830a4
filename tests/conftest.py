"""The tests' fixtures live in ``tests/support`` (see its ``__init__``), registered here as plugins so that every
test module gets them without importing another test module.

The integration tests share one real local stack per session, started on free ports under ``.local/test-stack``
(``support/services.py``); each test works in an election of its own, removed after it (``support/isolation.py``).
"""

pytest_plugins = [
    "tests.support.services",
    "tests.support.isolation",
    "tests.support.spark",
    "tests.support.randomuser",
    "tests.support.apps",
]
