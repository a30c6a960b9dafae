from .scheduling_flow_match import FlowMatchSwayScheduler, FlowMatchSwaySchedulerOutput

__all__ = ["FlowMatchSwayScheduler", "FlowMatchSwaySchedulerOutput"]
