//! NumPy `.npy` files of little-endian float32 arrays, written row by row.
//!
//! Format version 1.0 (numpy's `lib/format.py`): the magic `\x93NUMPY`, the version bytes 1
//! and 0, a little-endian u16 header length, then an ASCII Python dict literal with the keys
//! `descr`, `fortran_order` and `shape`, padded with spaces and ended by a newline so that the
//! data starts at a multiple of 64 bytes. The data follows in C order.
//!
//! The writer reserves a header of [`HEADER_BYTES`] bytes, streams the rows, and rewrites the
//! header with the final row count when it finishes, so that an array larger than memory can
//! be written while its length is still unknown.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Total size of the preamble and header the writer reserves: a multiple of 64 (as the format
/// requires) with room for a shape of several 20-digit dimensions.
pub const HEADER_BYTES: usize = 128;
/// Bytes before the dict: magic, two version bytes and the u16 length.
const PREAMBLE_BYTES: usize = 10;

/// Returns the complete version 1.0 header of a float32 C-order array of `shape`, padded with
/// spaces to `total` bytes (a multiple of 64).
///
/// Returns `None` when the dict does not fit in `total` bytes.
pub fn header(shape: &[usize], total: usize) -> Option<Vec<u8>> {
    let dims = match shape {
        [single] => format!("{single},"),
        _ => shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // The dict, at least one padding space, and the closing newline.
    if !total.is_multiple_of(64)
        || PREAMBLE_BYTES + dict.len() + 1 > total
        || total - PREAMBLE_BYTES > 65535
    {
        return None;
    }
    let dict_length = total - PREAMBLE_BYTES;
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(dict_length as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(total - 1, b' ');
    bytes.push(b'\n');
    Some(bytes)
}

/// Parses a version 1.0 or 2.0 header of a little-endian float32 C-order array.
///
/// Returns the shape and the byte offset where the data starts.
pub fn read_header(reader: &mut impl Read, path: &Path) -> Result<(Vec<usize>, u64)> {
    let invalid = |message: String| Error::Npy {
        path: path.to_path_buf(),
        message,
    };
    let mut preamble = [0u8; 8];
    reader
        .read_exact(&mut preamble)
        .map_err(|source| Error::io(path, source))?;
    if &preamble[..6] != MAGIC {
        return Err(invalid(
            "it does not start with the .npy magic bytes".into(),
        ));
    }
    let (dict_length, preamble_length) = match preamble[6] {
        1 => {
            let mut length = [0u8; 2];
            reader
                .read_exact(&mut length)
                .map_err(|source| Error::io(path, source))?;
            (u16::from_le_bytes(length) as usize, 10)
        }
        2 | 3 => {
            let mut length = [0u8; 4];
            reader
                .read_exact(&mut length)
                .map_err(|source| Error::io(path, source))?;
            (u32::from_le_bytes(length) as usize, 12)
        }
        version => return Err(invalid(format!("format version {version} is unknown"))),
    };
    if dict_length > 1 << 20 {
        return Err(invalid(format!("header of {dict_length} bytes")));
    }
    let mut dict = vec![0u8; dict_length];
    reader
        .read_exact(&mut dict)
        .map_err(|source| Error::io(path, source))?;
    let dict = String::from_utf8(dict).map_err(|_| invalid("header is not text".into()))?;
    let compact: String = dict.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("'descr':'<f4'") {
        return Err(invalid(format!(
            "only little-endian float32 ('<f4') is read, header is {}",
            dict.trim()
        )));
    }
    if !compact.contains("'fortran_order':False") {
        return Err(invalid("only C order is read".into()));
    }
    let shape = compact
        .split("'shape':(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| invalid(format!("no shape in header {}", dict.trim())))?;
    let shape = shape
        .split(',')
        .filter(|dim| !dim.is_empty())
        .map(|dim| dim.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| invalid(format!("shape ({shape}) is not a list of integers")))?;
    Ok((shape, (preamble_length + dict_length) as u64))
}

/// Streams float32 rows of a fixed shape into a `.npy` file; the row count is written when the
/// writer finishes.
pub struct NpyWriter {
    path: PathBuf,
    file: BufWriter<File>,
    /// Shape of one row, e.g. `[channels]` for an `[n, channels]` array.
    row_shape: Vec<usize>,
    row_length: usize,
    rows: usize,
}

impl NpyWriter {
    /// Creates (or truncates) `path` for an array of rows of `row_shape`.
    pub fn create(path: &Path, row_shape: &[usize]) -> Result<NpyWriter> {
        let file = File::create(path).map_err(|source| Error::io(path, source))?;
        let mut writer = NpyWriter {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            row_shape: row_shape.to_vec(),
            row_length: row_shape.iter().product(),
            rows: 0,
        };
        let header = writer.header()?;
        writer
            .file
            .write_all(&header)
            .map_err(|source| Error::io(path, source))?;
        Ok(writer)
    }

    fn header(&self) -> Result<Vec<u8>> {
        let mut shape = vec![self.rows];
        shape.extend_from_slice(&self.row_shape);
        header(&shape, HEADER_BYTES).ok_or_else(|| Error::Npy {
            path: self.path.clone(),
            message: format!("shape {shape:?} does not fit in a {HEADER_BYTES}-byte header"),
        })
    }

    /// Appends rows; `values.len()` must be a whole number of rows.
    pub fn write_rows(&mut self, values: &[f32]) -> Result<()> {
        assert!(
            self.row_length > 0 && values.len().is_multiple_of(self.row_length),
            "{} values are not whole rows of {}",
            values.len(),
            self.row_length
        );
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for value in values {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        self.file
            .write_all(&bytes)
            .map_err(|source| Error::io(&self.path, source))?;
        self.rows += values.len() / self.row_length;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the final header, flushes and syncs the file; returns the row count.
    pub fn finish(mut self) -> Result<usize> {
        let header = self.header()?;
        let path = self.path.clone();
        let io = |source| Error::io(&path, source);
        self.file.flush().map_err(io)?;
        let mut file = self
            .file
            .into_inner()
            .map_err(|error| io(error.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(self.rows)
    }
}

/// Random access to the rows of a float32 `.npy` file.
pub struct NpyReader {
    path: PathBuf,
    file: BufReader<File>,
    pub shape: Vec<usize>,
    data_offset: u64,
    row_length: usize,
}

impl NpyReader {
    /// Opens `path` and checks that its size matches its shape.
    pub fn open(path: &Path) -> Result<NpyReader> {
        let file = File::open(path).map_err(|source| Error::io(path, source))?;
        let length = file
            .metadata()
            .map_err(|source| Error::io(path, source))?
            .len();
        let mut file = BufReader::new(file);
        let (shape, data_offset) = read_header(&mut file, path)?;
        let Some((&rows, row_shape)) = shape.split_first() else {
            return Err(Error::Npy {
                path: path.to_path_buf(),
                message: "a scalar array has no rows".into(),
            });
        };
        let row_length: usize = row_shape.iter().product();
        let expected = data_offset + 4 * (rows * row_length) as u64;
        if length != expected {
            return Err(Error::Npy {
                path: path.to_path_buf(),
                message: format!(
                    "shape {shape:?} needs {expected} bytes but the file has {length} (it was cut short or written by another program)"
                ),
            });
        }
        Ok(NpyReader {
            path: path.to_path_buf(),
            file,
            shape,
            data_offset,
            row_length,
        })
    }

    pub fn rows(&self) -> usize {
        self.shape[0]
    }

    /// Reads `count` rows starting at `start`, appending their values to `out`.
    pub fn read_rows(&mut self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<()> {
        assert!(start + count <= self.rows(), "rows beyond the array");
        let offset = self.data_offset + 4 * (start * self.row_length) as u64;
        let mut bytes = vec![0u8; 4 * count * self.row_length];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|source| Error::io(&self.path, source))?;
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])),
        );
        Ok(())
    }
}

/// Writes a whole `[rows, columns]` float32 array to `path` atomically.
pub fn write_matrix(path: &Path, values: &[f32], columns: usize) -> Result<()> {
    let rows = values.len().checked_div(columns).unwrap_or(0);
    let shape = [rows, columns];
    let mut bytes = header(&shape, HEADER_BYTES).ok_or_else(|| Error::Npy {
        path: path.to_path_buf(),
        message: format!("shape {shape:?} does not fit in a {HEADER_BYTES}-byte header"),
    })?;
    bytes.reserve(values.len() * 4);
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    crate::io::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of numpy's own `np.save` for a float32 array of shape (2, 3), byte for byte
    /// apart from the padding length (numpy pads to 64 bytes, this writer to 128).
    #[test]
    fn header_follows_the_format_description() {
        let bytes = header(&[2, 3], 128).unwrap();
        assert_eq!(bytes.len(), 128);
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        assert_eq!(&bytes[6..8], &[1, 0]);
        let dict_length = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!(10 + dict_length, 128);
        let dict = std::str::from_utf8(&bytes[10..]).unwrap();
        assert!(
            dict.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
            "{dict}"
        );
        assert!(dict.ends_with(" \n"));
        // Everything between the dict and the newline is spaces.
        let end = dict.find('}').unwrap();
        assert!(
            dict[end + 1..dict.len() - 1]
                .bytes()
                .all(|byte| byte == b' ')
        );
        // A one-dimensional shape needs the trailing comma of a Python 1-tuple.
        let bytes = header(&[7], 128).unwrap();
        assert!(
            std::str::from_utf8(&bytes[10..])
                .unwrap()
                .contains("'shape': (7,)")
        );
        // Too long for the room, and lengths that break the 64-byte alignment.
        assert!(header(&[usize::MAX, usize::MAX, usize::MAX], 64).is_none());
        assert!(header(&[2, 3], 100).is_none());
        // The dict of a short shape does not fit in 64 bytes with the preamble.
        assert!(header(&[2, 3], 64).is_none());
    }

    #[test]
    fn streamed_rows_read_back() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("rows.npy");
        let mut writer = NpyWriter::create(&path, &[2, 3]).unwrap();
        let values: Vec<f32> = (0..18).map(|value| value as f32 * 0.5 - 1.0).collect();
        writer.write_rows(&values[..6]).unwrap();
        writer.write_rows(&values[6..]).unwrap();
        assert_eq!(writer.finish().unwrap(), 3);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            HEADER_BYTES as u64 + 18 * 4
        );

        let mut reader = NpyReader::open(&path).unwrap();
        assert_eq!(reader.shape, [3, 2, 3]);
        let mut rows = Vec::new();
        reader.read_rows(2, 1, &mut rows).unwrap();
        reader.read_rows(0, 1, &mut rows).unwrap();
        assert_eq!(&rows[..6], &values[12..]);
        assert_eq!(&rows[6..], &values[..6]);
    }

    #[test]
    fn cut_file_and_other_dtype_rejected() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("cut.npy");
        write_matrix(&path, &[1.0; 8], 4).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let error = NpyReader::open(&path).err().unwrap();
        assert!(error.to_string().contains("cut short"), "{error}");

        let mut other = bytes.clone();
        let text = String::from_utf8_lossy(&other[10..HEADER_BYTES]).replace("<f4", "<f8");
        other[10..HEADER_BYTES].copy_from_slice(text.as_bytes());
        std::fs::write(&path, &other).unwrap();
        let error = NpyReader::open(&path).err().unwrap();
        assert!(error.to_string().contains("'<f4'"), "{error}");
    }
}
