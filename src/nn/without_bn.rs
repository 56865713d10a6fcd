//! The network without batch norm that `bnorm train` trains beside the user's: the same
//! layers with every BatchNormalization removed, defined so that it is valid whenever the
//! network with batch norm is. Removing a BN can leave its fused ReLU with nothing to join
//! (`conv,relu,bn,relu` would become `conv,relu,relu`; `conv,maxpool,bn,relu` a ReLU after a
//! pooling layer); such a ReLU moves back through max pooling, flatten and dropout (which it
//! commutes with) to the Dense or Conv2D before them, is dropped where the values are
//! already rectified (ReLU twice is ReLU), and is dropped too where no such layer precedes it.

use crate::nn::registry::LayerSpec;

/// The twin of `layers` without batch normalization.
pub fn without_batch_norm(layers: &[LayerSpec]) -> Vec<LayerSpec> {
    let mut out: Vec<LayerSpec> = Vec::with_capacity(layers.len());
    for l in layers {
        match l {
            LayerSpec::BatchNorm => {}
            // A configuration with its ReLU fused keeps the ReLU.
            LayerSpec::BatchNormWith(c) if !c.relu => {}
            LayerSpec::Relu | LayerSpec::BatchNormWith(_) => {
                // The layers a ReLU commutes with: relu(maxpool(x)) = maxpool(relu(x)), and
                // flatten and dropout (a positive scale or zero) likewise.
                let k = out.len()
                    - out
                        .iter()
                        .rev()
                        .take_while(|l| {
                            matches!(
                                l,
                                LayerSpec::MaxPool2D(_)
                                    | LayerSpec::Flatten
                                    | LayerSpec::Dropout(_)
                            )
                        })
                        .count();
                if k > 0 && matches!(out[k - 1], LayerSpec::Dense(_) | LayerSpec::Conv2D(_)) {
                    out.insert(k, LayerSpec::Relu);
                }
            }
            other => out.push(other.clone()),
        }
    }
    out
}
