"""The course tooling: the notebook runner, the notebooks' shared helpers, parameters, the module summary,
the Colab setup cell and student copies. Needs the ``course`` extra for running notebooks."""
