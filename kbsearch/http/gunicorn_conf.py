"""gunicorn settings for kbsearch (``gunicorn -c python:kbsearch.http.gunicorn_conf``).

The access log names the path, never the query string or the referrer: a search's words
(``?q=…``), which may hold a customer's e-mail address or phone number, stay out of the
logs, and so does the client's address. ``kbsearch serve`` uses the same settings.
"""

worker_class = "gthread"
timeout = 60
accesslog = "-"
# time, request method, path without the query, protocol, status, bytes, duration in ms
access_log_format = '%(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
