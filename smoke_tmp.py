import time, torch, contextlib
from torch.nn.attention import SDPBackend, sdpa_kernel
from tasks.nmt.task import TranslationTask
torch.set_num_threads(1)
task = TranslationTask("/tmp/m30k", "de", "en", max_tokens=512, model=dict(layers=2, dim=64, ffn_dim=128, heads=4, dropout=0.1, attention_dropout=0.0),
    device=torch.device("cpu"), batch_size=1, eval_batch_size=1, seed=0)
model = task.build_model()
b = next(task.train_batches(0))
for backend in (None, SDPBackend.FLASH_ATTENTION, SDPBackend.MATH):
    try:
        with (sdpa_kernel(backend) if backend else contextlib.nullcontext()):
            loss, n = task.loss(model, b)
        g = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
        hv = torch.autograd.grad(g, list(model.parameters()), grad_outputs=[torch.ones_like(x) for x in g])
        print(backend, "ok")
    except Exception as e:
        print(backend, type(e).__name__, str(e)[:200])
