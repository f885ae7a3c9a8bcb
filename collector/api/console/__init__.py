"""The operator console: server-rendered pages at ``/console/`` (docs/console.md).

- ``router``: the routes, their headers and error pages, and the Jinja templates.
- ``access`` and ``signin``: the session a key signs in to, roles, and form tokens.
- ``overview``, ``customer_pages``, ``customer_detail``, ``forwarding_page``: the pages, each
  reading the services behind the matching API endpoints.
- ``usage_chart`` (SVG), ``customer_table`` (sort and filter) and ``filters``: pure rendering.

Pages work with JavaScript off; htmx (vendored in ``static/``) only refreshes live figures.
"""

from collector.api.console.router import FORM_MAX_BYTES, console_routes, console_templates

__all__ = ["FORM_MAX_BYTES", "console_routes", "console_templates"]
