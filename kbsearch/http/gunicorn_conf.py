"""gunicorn settings for kbsearch (``gunicorn -c python:kbsearch.http.gunicorn_conf``).

The access log names the path, never the query string or the referrer: a search's words
(``?q=…``), which may hold a customer's e-mail address or phone number, stay out of the
logs, and so does the client's address. ``kbsearch serve`` uses the same settings (every
name of this module is one of gunicorn's settings).

The request line may be as long as gunicorn allows while it stays bounded: 8190 bytes, its
maximum (0 would mean no limit at all). The app refuses a query string over
``MAX_QUERY_STRING_BYTES`` (6144) itself, with JSON 414 ``uri_too_long`` on /api routes, so
only a request line over 8190 bytes meets gunicorn's own HTML 414. Headers keep gunicorn's
bounds, written out here: at most 100 fields of at most 8190 bytes each.

gunicorn's control socket (``gunicornc``, new in gunicorn 25.1) is off: kbsearch does not use
it, and every server of one user would otherwise share ``~/.gunicorn/gunicorn.ctl``, the
last one started taking it over from the others.
"""

worker_class = "gthread"
timeout = 60
accesslog = "-"
# time, request method, path without the query, protocol, status, bytes, duration in ms
access_log_format = '%(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
control_socket_disable = True
