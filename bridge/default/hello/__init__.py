"""The example function of the embedded default (``app.handler``); ``trigger-bridge init``
copies ``app.py`` out of here."""
