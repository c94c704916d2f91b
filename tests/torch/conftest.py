"""tests/torch: one torch intra-op thread (the tests use tiny tensors; on a shared 2-core machine
torch's default thread pool makes every op wait for busy cores)."""
try:
    import torch
except ImportError:  # the test modules skip with a visible reason
    torch = None

if torch is not None:
    torch.set_num_threads(1)
