"""Learned understanding of student messages: intents (distress, asks for the answer, injection,
off-topic, reschedule) and the interview slot each sentence fills.

``classifier`` is the runtime (NumPy only, one shared MiniLM encoder); ``dataset`` writes the labelled
examples from hand-written lines and templates in ``data/``; ``train`` fits the weights and the
held-out report (``make classifiers``).
"""
