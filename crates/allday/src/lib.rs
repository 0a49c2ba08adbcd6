//! allday learns an image embedding that matches photographs of the same place across
//! contrasting conditions (day and night, seasons) and retrieves the matching database image
//! for a query.
//!
//! Stage 1 trains a double variational autoencoder in the style of UNIT without labels
//! ([`model`], [`loss`], [`training`]). Its shared latent space is the place descriptor
//! ([`retrieval`]), measured by Recall@N and PR-AUC ([`evaluation`]) against a raw-pixel
//! baseline ([`baseline`]), HOG ([`hog`]) and ImageNet-pretrained networks ([`pretrained`],
//! pooled by [`pooling`]). Stage 2 learns a weight per latent channel from labelled
//! triplets of places on the frozen encoders ([`weighting`]).

pub mod backend;
pub mod baseline;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod evaluation;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod hog;
pub mod index;
pub mod io;
pub mod knn;
pub mod loss;
pub mod match_grid;
pub mod model;
pub mod npy;
pub mod plot;
pub mod pooling;
pub mod pretrained;
pub mod retrieval;
pub mod saliency;
pub mod training;
pub mod translation;
pub mod weighting;

pub use config::Config;
pub use error::{Error, Result};
pub use model::{Domain, DoubleVae};
