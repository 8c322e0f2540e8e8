// Files that hold secrets (private keys, tokens, client secrets): refused when the group or others
// may read or write them, so a key that leaked through a loose mode is not quietly used.
import { readFileSync, statSync } from 'node:fs';
import { CbrError, errorCode, errorMessage } from '../errors.js';

/** Throws FILE_PERMISSIONS naming `field`, the file and its mode when group or others have any access. */
export function checkSecretFileMode(path: string, field: string): void {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    throw new CbrError('CONFIG_INVALID', `${field}: cannot read ${path}: ${errorCode(err) ?? errorMessage(err)}`, { cause: err });
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new CbrError(
      'FILE_PERMISSIONS',
      `${field}: ${path} holds a secret but has mode ${octal} (group or others may access it); chmod 600 ${path} (and check who may have read it)`,
    );
  }
}

/** Reads a secret file after checkSecretFileMode; errors name `field` and the file. */
export function readSecretFile(path: string, field: string): string {
  checkSecretFileMode(path, field);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CbrError('CONFIG_INVALID', `${field}: cannot read ${path}: ${errorCode(err) ?? errorMessage(err)}`, { cause: err });
  }
}
