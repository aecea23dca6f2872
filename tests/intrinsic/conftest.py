import torch

torch.set_num_threads(1)  # small nets: one thread is fastest, and avoids oversubscribing a busy machine
