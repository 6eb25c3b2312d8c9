"""Reproductions of the experiments of Kingma & Ba, "Adam: A Method for Stochastic Optimization" (2014).

Submodules:
    data: offline-first loaders for MNIST, Fashion-MNIST, IMDB bag-of-words and CIFAR-10.
    models: the paper's models in ``flax.nnx`` (logistic regression, MLP, CNN, VAE).
    train: the jitted training loop and its :class:`~adaptix.experiments.train.History`.
    sweep: many (learning rate, seed) runs of one ``nnx`` model trained as one ``jit(vmap(...))`` program.
    optimizers: how optimizers are named on the command line (aliases, special names, ``module:function``).
    options: :class:`~adaptix.experiments.options.RunOptions`, the command line's options for one run.
    results: ``results.json`` writing, mean and s.d. over seeds, downsampled curves and plain-text tables.
    registry: the experiments: datasets, models, optimizers and step sizes.
    run: grid search and training (vmapped, or one run at a time), summary table, ``results.json``, plots.
    vae_bias_correction: section 6.4, Adam with and without bias correction on a VAE over a grid.
    landscapes, toys: toy problems and optimizer trajectories on them.

Command line: ``adaptix-experiments list`` / ``adaptix-experiments run EXPERIMENT``.
"""
