"""ControlNet: a member's picture turned into a control map (``preprocess``), the ControlNet
pipelines sharing the base model's weights (``loading``), and a batch's call (``run``)."""
