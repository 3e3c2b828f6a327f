"""The ECG-CoCa signal encoder and its triage head: input adapter, export, runtimes, training.

Importing this package (and `adapter`, `variants`, `manifest`, `runtime`, `triage_head`) needs numpy only: workers
never import torch. `torch_model`, `checkpoint`, `export` and `train` import torch and are loaded only when called
(the `train` extra installs it).
"""
