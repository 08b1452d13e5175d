// scripts/qemu.ts's QEMU command line: the virtio-net device gets vectors=0 under TCG only (QEMU
// 7.2 there segfaults with vhost-user and MSI-X); under KVM it keeps MSI-X unless told otherwise.
import t from 'tap';
import { qemuArgs } from '../scripts/qemu.js';
import type { Accel, StartGuestOptions } from '../scripts/qemu.js';

const image = { dir: '/img', kernel: '/img/vmlinuz', initrd: '/img/initrd.gz', initrdUncompressed: '/img/initrd' };

function device(accel: Accel, opts: Partial<StartGuestOptions> = {}): string {
  const args = qemuArgs({ image, initrd: '/img/initrd', accel, opts: { socketPath: '/tmp/v.sock', ...opts } });
  const i = args.indexOf(
    '-device',
    args.findIndex((a) => a === '-netdev'),
  );
  return args[i + 1] ?? '';
}

t.test('vectors=0 under TCG only, unless asked for', async (t) => {
  t.match(device('tcg'), /^virtio-net-pci,.*vectors=0/, 'TCG: vectors=0');
  t.notMatch(device('kvm'), /vectors=/, 'KVM: MSI-X, as QEMU gives it');
  t.match(device('kvm', { vectors: 3 }), /vectors=3/, 'asked for: as asked');
  t.match(device('tcg', { vectors: 3 }), /vectors=3/);
});
