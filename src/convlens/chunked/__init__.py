"""Several optimizer steps per ``training_step`` call: the speed work, behind one seam.

Switched on by one line of ``conf/train.yaml`` (``stepping: chunked``, the default; ``stepping=lightning``
trains with Lightning's own loop and the textbook ``models.classifier.ConvNetClassifier``). Everything it needs
is in this folder: the plan of calls (``plan``), the module that takes a chunk of steps (``classifier``), the
callback that makes the trainer, the training loader and the progress bar count chunks (``step_chunks``,
``step_batches``), CUDA-graph replay of the step (``cuda_graph_step``) and the private Lightning names only it
uses (``lightning_internals``). Deleting this folder and that line leaves a project that trains as Lightning does.
"""
