"""Function registrations only: each function hands its trigger to `shared/`."""

import azure.functions as func

from shared import call_events, http_api, keepalive, notifications
from shared.context import get_context

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="calls", methods=["POST"])
def register_call(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.register_call(get_context(), req)


@app.route(route="calls", methods=["GET"])
def list_calls(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.list_calls(get_context(), req)


@app.route(route="calls/{callId}", methods=["GET"])
def get_call(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.get_call(get_context(), req)


@app.route(route="calls/{callId}", methods=["DELETE"])
def delete_call(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.delete_call(get_context(), req)


@app.route(route="notifications", methods=["POST"])
def receive_notifications(req: func.HttpRequest) -> func.HttpResponse:
    return notifications.receive(get_context(), req)


@app.timer_trigger(arg_name="timer", schedule="%KEEPALIVE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def keepalive_tick(timer: func.TimerRequest) -> None:
    keepalive.run_timer(get_context(), past_due=timer.past_due)


@app.queue_trigger(arg_name="msg", queue_name="%KEEPALIVE_WORK_QUEUE_NAME%", connection="AzureWebJobsStorage")
def keepalive_work(msg: func.QueueMessage) -> None:
    keepalive.run_work(get_context(), msg)


@app.queue_trigger(arg_name="msg", queue_name="%CALL_EVENTS_QUEUE_NAME%", connection="AzureWebJobsStorage")
def publish_call_event(msg: func.QueueMessage) -> None:
    call_events.publish_message(get_context(), msg)
