from farm.config import Settings
from farm.spec import BUILD_TASK
from tasks.app import create_app


def test_delivery_settings_and_the_timeout_order() -> None:
    settings = Settings.from_env({"FARM_BUILD_TIMEOUT_SECONDS": "600"})
    app = create_app(settings)
    assert BUILD_TASK in app.tasks  # the worker's app has the build task on it
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_concurrency == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    visibility = conf.broker_transport_options["visibility_timeout"]
    # visibility timeout > hard limit > soft limit > the executor's own timeout
    assert visibility > conf.task_time_limit > conf.task_soft_time_limit > 600
    assert conf.task_default_queue == "builds"
