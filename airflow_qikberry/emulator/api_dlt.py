"""``sms/senders`` and ``sms/templates``: the account's DLT senders and templates (reference 4.16)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_qikberry.emulator.envelope import ApiError, ApiRequest, ApiResult, name_filter, ok, paged

if TYPE_CHECKING:
    from airflow_qikberry.emulator.registry import Problems
    from airflow_qikberry.emulator.state import EmulatorState

PER_PAGE = 15
Handler = Callable[[ApiRequest], ApiResult]
NOT_FOUND = "Not Found."
# The message of a templates endpoint made unavailable with ``templates_unavailable_status``.
UNAVAILABLE_MESSAGES = {401: "Unauthenticated.", 403: "This action is unauthorized.", 404: NOT_FOUND}


def _raise(problems: Problems) -> None:
    if problems:
        errors = {key: [text] for key, text in problems.items()}
        raise ApiError(422, next(iter(problems.values())), errors)


class DltApi:
    """Sender and template endpoints over one :class:`EmulatorState` (its lock guards the registry)."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {
            "sms/senders": {"GET": self.sender_list, "POST": self.sender_create},
            "sms/templates": {
                "GET": self._gated(self.template_list),
                "POST": self._gated(self.template_create),
            },
        }

    def item_routes(self) -> dict[str, dict[str, Handler]]:
        return {
            "sms/senders": {
                "GET": self.sender_get,
                "PUT": self.sender_update,
                "PATCH": self.sender_update,
                "DELETE": self.sender_delete,
            },
            "sms/templates": {
                "GET": self._gated(self.template_get),
                "PUT": self._gated(self.template_update),
                "PATCH": self._gated(self.template_update),
                "DELETE": self._gated(self.template_delete),
            },
        }

    def _gated(self, handler: Handler) -> Handler:
        """Return the handler, refused when templates are unavailable (``templates_unavailable_status``)."""

        def gate(req: ApiRequest) -> ApiResult:
            status = self.state.config.templates_unavailable_status
            if status is not None:
                raise ApiError(status, UNAVAILABLE_MESSAGES.get(status, "Server Error"))
            return handler(req)

        return gate

    # ------------------------------------------------------------------ senders
    def sender_list(self, req: ApiRequest) -> ApiResult:
        flt = name_filter(req.params)
        state = self.state
        with state.lock:
            rows = [state.registry.sender_view(s) for s in state.registry.list_senders(flt)]
        return paged(req, rows, PER_PAGE, "sms/senders", [("filter[name]", flt)] if flt else [])

    def sender_create(self, req: ApiRequest) -> ApiResult:
        state = self.state
        with state.lock:
            clean, problems = state.registry.check_sender(req.params, None)
            _raise(problems)
            sender = state.registry.add_sender(clean, state.iso_stamp())
            view = state.registry.sender_view(sender)
        return ok({"status": "OK", "code": 200, "message": "Sender Saved Successfully", "data": view})

    def sender_get(self, req: ApiRequest) -> ApiResult:
        state = self.state
        with state.lock:
            sender = state.registry.senders.get(req.args[0])
            if sender is None:
                raise ApiError(404, NOT_FOUND)
            view = state.registry.sender_view(sender)
        return ok({"status": "OK", "code": 200, "message": "OK", "data": view})

    def sender_update(self, req: ApiRequest) -> ApiResult:
        state = self.state
        with state.lock:
            sender = state.registry.senders.get(req.args[0])
            if sender is None:
                raise ApiError(404, NOT_FOUND)
            clean, problems = state.registry.check_sender(req.params, sender)
            _raise(problems)
            view = state.registry.sender_view(state.registry.update_sender(sender, clean, state.iso_stamp()))
        return ok({"status": "OK", "code": 200, "message": "Sender Updated Successfully", "data": view})

    def sender_delete(self, req: ApiRequest) -> ApiResult:
        state = self.state
        with state.lock:
            if state.registry.senders.pop(req.args[0], None) is None:
                raise ApiError(404, NOT_FOUND)
        return ok({"status": "OK", "code": 200, "message": "Deleted Successfully", "data": []})

    # ------------------------------------------------------------------ templates
    def template_list(self, req: ApiRequest) -> ApiResult:
        flt = name_filter(req.params)
        state = self.state
        with state.lock:
            rows = [state.registry.template_view(t) for t in state.registry.list_templates(flt)]
        return paged(req, rows, PER_PAGE, "sms/templates", [("filter[name]", flt)] if flt else [])

    def template_create(self, req: ApiRequest) -> ApiResult:
        state = self.state
        with state.lock:
            clean, problems = state.registry.check_template(req.params, None)
            _raise(problems)
            view = state.registry.template_view(state.registry.add_template(clean, state.iso_stamp()))
        return ok({"status": "OK", "code": 200, "message": "Template Saved Successfully", "data": view})

    def template_get(self, req: ApiRequest) -> ApiResult:
        state = self.state
        with state.lock:
            template = state.registry.templates.get(req.args[0])
            if template is None:
                raise ApiError(404, NOT_FOUND)
            view = state.registry.template_view(template)
        return ok({"status": "OK", "code": 200, "message": "OK", "data": view})

    def template_update(self, req: ApiRequest) -> ApiResult:
        state = self.state
        with state.lock:
            template = state.registry.templates.get(req.args[0])
            if template is None:
                raise ApiError(404, NOT_FOUND)
            clean, problems = state.registry.check_template(req.params, template)
            _raise(problems)
            updated = state.registry.update_template(template, clean, state.iso_stamp())
            view = state.registry.template_view(updated)
        return ok({"status": "OK", "code": 200, "message": "Template Updated Successfully", "data": view})

    def template_delete(self, req: ApiRequest) -> ApiResult:
        state = self.state
        with state.lock:
            if state.registry.templates.pop(req.args[0], None) is None:
                raise ApiError(404, NOT_FOUND)
        return ok({"status": "OK", "code": 200, "message": "Deleted Successfully", "data": []})
