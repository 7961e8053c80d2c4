"""Function registrations only: each function hands its trigger to `shared/`."""

import azure.functions as func

from shared import http_api
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
