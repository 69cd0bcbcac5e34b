"""Entry points: one Blueprint per concern. Each function decodes its trigger into a typed event from
``shared.events``, calls one use case in ``shared`` and maps the result to outputs or a response."""
