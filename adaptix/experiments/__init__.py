"""Reproductions of the experiments of Kingma & Ba, "Adam: A Method for Stochastic Optimization" (2014).

Submodules:
    data: offline-first loaders for MNIST, Fashion-MNIST, IMDB bag-of-words and CIFAR-10.
"""
