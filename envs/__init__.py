"""Gymnasium environments of vlrl (installed as ``vlrl.envs``)."""
