"""Shared building blocks at the bottom of the layers, used by models, agents and loops alike:
``schedule`` (when a learner updates), ``nets`` (the MLP and the Adam every learner builds), ``stats``
(running mean / std), ``seeds`` (the named seed streams and ``episode_seed``). They import nothing of wm
except wm.config and wm.errors."""
