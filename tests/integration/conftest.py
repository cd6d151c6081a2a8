import pytest

from tests.support.worker import WorkerProcess, create_topics, isolated_settings


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    """A real worker process on its own topics, started once per test module."""
    folder = tmp_path_factory.mktemp("worker")
    settings = isolated_settings(kafka_bootstrap, folder / "data")
    create_topics(settings)
    process = WorkerProcess(settings, folder / "worker.log")
    process.start()
    yield process
    process.stop()
