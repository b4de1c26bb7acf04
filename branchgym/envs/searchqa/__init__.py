from branchgym.envs.searchqa.env import SearchQAEnv

__all__ = ["SearchQAEnv"]
