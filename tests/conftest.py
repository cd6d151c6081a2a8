import pytest

from milestream.pipeline.driver import TopologyTestDriver


@pytest.fixture
def driver() -> TopologyTestDriver:
    """The whole pipeline in-process, memory state."""
    return TopologyTestDriver()
