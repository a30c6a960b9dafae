"""Flow-matching ODE scheduler with F5-TTS's sway sampling (Euler or midpoint).

Time convention (read this first): ``timesteps`` are **F5-TTS flow times** ``t``, running from 0 (pure noise)
to 1 (data), and the model's output is the velocity ``dx/dt``. diffusers' flow-matching schedulers count
``sigma = 1 - t`` the other way round; :attr:`FlowMatchSwayScheduler.sigmas` gives that view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

# Empirically pruned step sampling (EPSS, from F5-TTS v1): hand-picked grids on a 1/32 lattice for few steps.
EPSS_TIMESTEPS = {
    5: [0, 2, 4, 8, 16, 32],
    6: [0, 2, 4, 6, 8, 16, 32],
    7: [0, 2, 4, 6, 8, 16, 24, 32],
    10: [0, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32],
    12: [0, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32],
    16: [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32],
}


@dataclass
class FlowMatchSwaySchedulerOutput(BaseOutput):
    """
    Args:
        prev_sample (`torch.Tensor`):
            The sample after this step (closer to data).
    """

    prev_sample: torch.Tensor


class FlowMatchSwayScheduler(SchedulerMixin, ConfigMixin):
    r"""
    Integrates the flow ODE ``dx/dt = v(x, t)`` from noise (t = 0) to data (t = 1) on a fixed grid.

    The grid is uniform (or EPSS for the step counts F5-TTS tabulates), then warped by sway sampling,
    ``t ← t + s · (cos(π t / 2) − 1 + t)``, which for ``s < 0`` spends more steps near the noise end.

    Args:
        ode_method (`str`, *optional*, defaults to `"euler"`):
            `"euler"` (one model call a step) or `"midpoint"` (two calls a step, second order).
        sway_sampling_coef (`float`, *optional*, defaults to -1.0):
            The sway coefficient `s`; `None` or 0 keeps the grid unwarped.
        timestep_spacing (`str`, *optional*, defaults to `"epss"`):
            `"linear"` or `"epss"`; EPSS falls back to linear for step counts it has no grid for.

    Example:

    ```py
    >>> from deepdubber_hf import FlowMatchSwayScheduler
    >>> scheduler = FlowMatchSwayScheduler()
    >>> scheduler.set_timesteps(8)
    >>> scheduler.timesteps.shape
    torch.Size([8])
    ```
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        ode_method: Literal["euler", "midpoint"] = "euler",
        sway_sampling_coef: Optional[float] = -1.0,
        timestep_spacing: Literal["linear", "epss"] = "epss",
    ):
        if ode_method not in ("euler", "midpoint"):
            raise ValueError(f"ode_method must be 'euler' or 'midpoint', got {ode_method!r}.")
        if timestep_spacing not in ("linear", "epss"):
            raise ValueError(f"timestep_spacing must be 'linear' or 'epss', got {timestep_spacing!r}.")
        self.num_inference_steps = None
        self.grid = None
        self.timesteps = None
        self._step_index = None
        self._midpoint_state = None

    @property
    def sigmas(self) -> torch.Tensor:
        """The grid in diffusers' convention, ``sigma = 1 - t`` (1 = noise)."""
        return 1.0 - self.grid

    @property
    def step_index(self):
        return self._step_index

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: Union[str, torch.device, None] = None,
        sway_sampling_coef: Optional[float] = "config",
        dtype: torch.dtype = torch.float32,
    ):
        r"""
        Build the grid of `num_inference_steps + 1` times from 0 to 1 and the times the model is called at.

        Args:
            num_inference_steps (`int`):
                Number of ODE steps.
            device (`str` or `torch.device`, *optional*):
                Where the timesteps live.
            sway_sampling_coef (`float`, *optional*):
                Overrides the configured sway coefficient (`None` disables sway sampling).
            dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
                dtype of the grid (F5-TTS builds it in the sample's dtype).
        """
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}.")
        if sway_sampling_coef == "config":
            sway_sampling_coef = self.config.sway_sampling_coef
        if self.config.timestep_spacing == "epss" and num_inference_steps in EPSS_TIMESTEPS:
            grid = torch.tensor(EPSS_TIMESTEPS[num_inference_steps], device=device, dtype=dtype) / 32
        else:
            grid = torch.linspace(0, 1, num_inference_steps + 1, device=device, dtype=dtype)
        if sway_sampling_coef is not None:
            grid = grid + sway_sampling_coef * (torch.cos(math.pi / 2 * grid) - 1 + grid)
        self.num_inference_steps = num_inference_steps
        self.grid = grid  # (steps + 1,)
        if self.config.ode_method == "euler":
            self.timesteps = grid[:-1]
        else:  # each step evaluates at its start and its middle
            starts = grid[:-1]
            middles = starts + (grid[1:] - starts) / 2
            self.timesteps = torch.stack((starts, middles), dim=1).flatten()
        self._step_index = 0
        self._midpoint_state = None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> Union[FlowMatchSwaySchedulerOutput, tuple]:
        r"""
        Advance the sample with the velocity `model_output` predicted at `timestep` (the current entry of
        `timesteps`). With the midpoint method, call it once per entry of `timesteps` (twice per ODE step):
        the first call returns the half-step sample to evaluate the model on, the second the full step.

        Args:
            model_output (`torch.Tensor`):
                Predicted velocity.
            timestep (`float` or `torch.Tensor`):
                The flow time the velocity was predicted at.
            sample (`torch.Tensor`):
                The sample the model saw.
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`FlowMatchSwaySchedulerOutput`] instead of a tuple.
        """
        if self._step_index is None:
            raise ValueError("Call `set_timesteps` before `step`.")
        if self._step_index >= len(self.timesteps):
            raise ValueError("All timesteps are done: call `set_timesteps` again to sample anew.")
        if self.config.ode_method == "euler":
            i = self._step_index
            prev_sample = sample + (self.grid[i + 1] - self.grid[i]) * model_output
        else:
            i = self._step_index // 2
            dt = self.grid[i + 1] - self.grid[i]
            if self._step_index % 2 == 0:
                self._midpoint_state = sample
                prev_sample = sample + model_output * (dt / 2)
            else:
                prev_sample = self._midpoint_state + dt * model_output
                self._midpoint_state = None
        self._step_index += 1
        if not return_dict:
            return (prev_sample,)
        return FlowMatchSwaySchedulerOutput(prev_sample=prev_sample)

    def scale_noise(self, sample: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The training path ``x_t = (1 - t) · noise + t · sample`` at flow time(s) `timestep`."""
        t = timestep.reshape(-1, *([1] * (sample.ndim - 1))).to(sample.dtype)
        return (1 - t) * noise + t * sample

    def __len__(self):
        return self.num_inference_steps or 0


__all__ = ["EPSS_TIMESTEPS", "FlowMatchSwayScheduler", "FlowMatchSwaySchedulerOutput"]
