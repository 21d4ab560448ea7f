"""SGD with momentum and L2 weight decay, exactly as PyTorch's `torch.optim.SGD` (the reference).

Per variable w, gradient g (averaged over ranks) and learning rate lr: g = g + weight_decay x w;
buf = momentum x buf + g (buf starts at 0); w = w - lr x buf. Keras' SGD keeps lr inside the velocity
(v = momentum x v - lr x g), which differs while the learning rate changes (warmup, decay).
With `exclude_bn_bias`, variables of rank <= 1 (batch-norm gamma/beta and biases) get no decay.
"""

import tensorflow as tf
import tf_keras


class SGD(tf_keras.optimizers.Optimizer):
    def __init__(self, learning_rate, momentum: float = 0.9, weight_decay: float = 0.0,
                 exclude_bn_bias: bool = False, name: str = "SGD"):
        # Every variable's update is compiled by XLA, also on a CPU (tf_keras does so only with a GPU):
        # run by TensorFlow's kernels, the update of a small vector (batch-norm scales, biases) came
        # out 1 ulp apart on two ranks from bitwise-equal inputs, and the ranks' weights drifted apart.
        super().__init__(name=name, jit_compile=True)
        self.jit_compile = True
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.momentum = float(momentum)
        self.l2 = float(weight_decay)
        self.exclude_bn_bias = bool(exclude_bn_bias)

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        self.momentums = [self.add_variable_from_reference(v, "m") for v in var_list]

    def decays(self, variable) -> bool:
        """Whether `variable` gets weight decay."""
        return self.l2 > 0 and not (self.exclude_bn_bias and variable.shape.rank <= 1)

    def update_step(self, gradient, variable):
        lr = tf.cast(self.learning_rate, variable.dtype)
        if self.decays(variable):
            gradient = gradient + tf.cast(self.l2, variable.dtype) * variable
        buf = self.momentums[self._index_dict[self._var_key(variable)]]
        buf.assign(tf.cast(self.momentum, variable.dtype) * buf + gradient)
        variable.assign_sub(lr * buf)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"learning_rate": self._serialize_hyperparameter(self._learning_rate),
                       "momentum": self.momentum, "weight_decay": self.l2,
                       "exclude_bn_bias": self.exclude_bn_bias})
        return config
