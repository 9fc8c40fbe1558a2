"""The nginx pod's entrypoint: watch ConfigMap ``NAME-proxy``, check each new text with ``nginx -t``, swap it
in and reload nginx gracefully, report the outcome into ``NAME-proxy-status``. Standard library only.

Modules: ``applier`` (candidate file, ``nginx -t``, rename, SIGHUP; no API), ``watch`` (parsing of list and
watch responses), ``report`` (the status body), ``kube`` (the HTTP I/O, every call with a deadline),
``sync`` (apply the newest text, report, retry with backoff; no I/O of its own), ``main`` (the process
around them).
"""
