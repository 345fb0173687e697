"""`python main.py bench`: the engine's speed against references measured in the same run.

`step.py` the whole training step per model shape (numpy reference, PyTorch in a child process:
`torch_child.py`, which imports only torch), `attention.py` tiled vs naive attention, `optimizer.py`
the AdamW kernel vs numpy, `environment.py` the machine and thread pools the numbers were taken on.
"""
