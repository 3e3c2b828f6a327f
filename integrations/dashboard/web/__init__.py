"""The dashboard's web app: server-rendered pages, a little vanilla JavaScript, the ECG drawn as SVG on the standard
grid. `app.create_app` builds it from a `config.WebConfig` and the store's engine; `stream/dashboard_main.py` serves
it."""
