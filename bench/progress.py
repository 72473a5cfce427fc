"""A live progress bar (loss, metric, lr, samples/s) on terminals; one line per epoch everywhere."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


class TrainProgress:
    def __init__(self, enabled: str | bool, total_steps: int, done_steps: int, label: str, quiet: bool = False) -> None:
        live = not quiet and (console.is_terminal if enabled == "auto" else bool(enabled))
        self.quiet = quiet
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  {task.fields[metric]}  lr {task.fields[lr]}  "
                       "{task.fields[speed]} samples/s"), TimeRemainingColumn(),
            console=console, disable=not live, transient=False,
        )
        self.task_id = self.bar.add_task(label, total=total_steps, completed=done_steps, loss="-", metric="-",
                                         lr="-", speed="-")
        self.label = label

    def __enter__(self) -> TrainProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(self, steps: int, loss: float, lr: float, samples_per_s: float) -> None:
        self.bar.update(self.task_id, advance=steps, loss=f"{loss:.4f}", lr=f"{lr:.3g}",
                        speed=f"{samples_per_s:,.0f}")

    def epoch_done(self, epoch: int, epochs: int, train_loss: float, metric_name: str, value: float,
                   lr: float) -> None:
        self.bar.update(self.task_id, metric=f"{metric_name} {value:.2f}")
        if self.quiet:
            return
        line = (f"{self.label} epoch {epoch}/{epochs}  train_loss {train_loss:.4f}  "
                f"{metric_name} {value:.2f}  lr {lr:.3g}")
        if self.bar.disable:
            console.print(line, highlight=False)
        else:
            self.bar.console.print(line, highlight=False)
