//! A model on disk: the `.mlir` text plus the npz named by its `module.weight_file` attribute
//! (relative to the `.mlir`'s directory), read and written together as every tool needs them.

use crate::ir::text::{load_module, save_module, MlirFileError};
use crate::ir::weights::Weights;
use crate::ir::{attr, Attr, Module};
use crate::npz::{read_npz, write_npz, NpzError};
use std::path::{Path, PathBuf};

/// Errors loading or saving a model; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The `.mlir` could not be read, parsed or written.
    #[error(transparent)]
    Mlir(#[from] MlirFileError),
    /// The weight npz could not be read or written.
    #[error(transparent)]
    Npz(#[from] NpzError),
    /// The module does not name its weight file.
    #[error("{0}: the module has no module.weight_file attribute")]
    NoWeightFile(PathBuf),
}

/// Path of the weight file of `module` stored next to `mlir_path`.
pub fn weight_path(mlir_path: &Path, module: &Module) -> Option<PathBuf> {
    let Some(Attr::Str(name)) = module.attrs.get("weight_file") else { return None };
    let p = Path::new(name);
    if p.is_absolute() {
        return Some(p.to_path_buf());
    }
    Some(mlir_path.parent().unwrap_or(Path::new("")).join(p))
}

/// Read an `.mlir` and its weights.
pub fn load_model(mlir_path: &Path) -> Result<(Module, Weights), ModelFileError> {
    let module = load_module(mlir_path)?;
    let wpath = weight_path(mlir_path, &module).ok_or_else(|| ModelFileError::NoWeightFile(mlir_path.to_path_buf()))?;
    let mut weights = Weights::default();
    for (name, data) in read_npz(&wpath)? {
        weights.insert(name, data);
    }
    Ok((module, weights))
}

/// Write the weights as `weight_file_name` next to `mlir_path` (recorded in the module's
/// `weight_file` attribute), then the `.mlir`; both atomically.
pub fn save_model(
    mlir_path: &Path,
    module: &mut Module,
    weights: &Weights,
    weight_file_name: &str,
) -> Result<(), ModelFileError> {
    module.attrs.insert("weight_file".into(), attr::str(weight_file_name));
    let wpath = mlir_path.parent().unwrap_or(Path::new("")).join(weight_file_name);
    let arrays: Vec<_> = weights.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_npz(&wpath, &arrays)?;
    save_module(mlir_path, module)?;
    Ok(())
}
