"""FlowMatchSwayScheduler: grids, sway, Euler/midpoint integration against torchdiffeq, config round trip."""

import math

import pytest
import torch

from deepdubber_hf import FlowMatchSwayScheduler


def integrate(scheduler, velocity, x, steps):
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(velocity(t, x), t, x).prev_sample
    return x


def test_linear_grid_and_sway():
    scheduler = FlowMatchSwayScheduler(timestep_spacing="linear", sway_sampling_coef=None)
    scheduler.set_timesteps(4)
    assert torch.allclose(scheduler.grid, torch.linspace(0, 1, 5))
    assert torch.allclose(scheduler.sigmas, 1 - torch.linspace(0, 1, 5))
    scheduler.set_timesteps(4, sway_sampling_coef=-1.0)
    t = torch.linspace(0, 1, 5)
    assert torch.allclose(scheduler.grid, t - (torch.cos(math.pi / 2 * t) - 1 + t))
    assert scheduler.grid[0] == 0 and abs(float(scheduler.grid[-1]) - 1) < 1e-6
    assert (scheduler.grid[1:] > scheduler.grid[:-1]).all()


def test_epss_grid_only_where_tabulated():
    scheduler = FlowMatchSwayScheduler(sway_sampling_coef=None)
    scheduler.set_timesteps(7)
    assert scheduler.grid.tolist() == [x / 32 for x in [0, 2, 4, 6, 8, 16, 24, 32]]
    scheduler.set_timesteps(8)
    assert torch.allclose(scheduler.grid, torch.linspace(0, 1, 9))


def test_euler_is_exact_for_constant_velocity_and_midpoint_for_linear_in_time():
    x0 = torch.randn(3, 5)
    v = torch.randn(3, 5)
    euler = FlowMatchSwayScheduler(ode_method="euler")
    assert torch.allclose(integrate(euler, lambda t, x: v, x0, 6), x0 + v, atol=1e-6)
    # dx/dt = t → x1 = x0 + 1/2: midpoint is exact, Euler is not
    midpoint = FlowMatchSwayScheduler(ode_method="midpoint", timestep_spacing="linear", sway_sampling_coef=None)
    assert torch.allclose(integrate(midpoint, lambda t, x: t * torch.ones_like(x), x0, 3), x0 + 0.5, atol=1e-6)
    plain_euler = FlowMatchSwayScheduler(timestep_spacing="linear", sway_sampling_coef=None)
    assert not torch.allclose(integrate(plain_euler, lambda t, x: t * torch.ones_like(x), x0, 3), x0 + 0.5, atol=1e-3)
    assert len(midpoint.timesteps) == 6


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_matches_torchdiffeq(method):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    scheduler = FlowMatchSwayScheduler(ode_method=method, sway_sampling_coef=-1.0)
    velocity = lambda t, x: torch.sin(3 * x) - t * x  # noqa: E731
    x0 = torch.randn(4, 7)
    ours = integrate(scheduler, velocity, x0, 10)
    reference = torchdiffeq.odeint(velocity, x0, scheduler.grid, method=method)[-1]
    assert (ours - reference).abs().max() < 1e-6


def test_scale_noise_is_the_training_path():
    scheduler = FlowMatchSwayScheduler()
    data, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t = torch.tensor([0.0, 1.0])
    mixed = scheduler.scale_noise(data, t, noise)
    assert torch.equal(mixed[0], noise[0]) and torch.equal(mixed[1], data[1])


def test_config_round_trip_and_errors(tmp_path):
    scheduler = FlowMatchSwayScheduler(ode_method="midpoint", sway_sampling_coef=-0.5)
    scheduler.save_pretrained(tmp_path)
    loaded = FlowMatchSwayScheduler.from_pretrained(tmp_path)
    assert loaded.config.ode_method == "midpoint" and loaded.config.sway_sampling_coef == -0.5
    with pytest.raises(ValueError, match="ode_method"):
        FlowMatchSwayScheduler(ode_method="rk4")
    with pytest.raises(ValueError, match="set_timesteps"):
        FlowMatchSwayScheduler().step(torch.zeros(1), 0.0, torch.zeros(1))
    with pytest.raises(ValueError, match="num_inference_steps"):
        FlowMatchSwayScheduler().set_timesteps(0)
