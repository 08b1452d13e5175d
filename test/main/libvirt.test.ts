// The libvirt domains in contrib/libvirt validate against libvirt's own schema (virt-xml-validate,
// from libvirt-clients) and say what vunet needs: a vhost-user interface on vunet's socket with
// QEMU as the client, a virtio model, guest RAM from a shared memfd; the TCG one gives the device
// vectors=0 (QEMU 7.2 under TCG) and the KVM one does not.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const DIR = fileURLToPath(new URL('../../contrib/libvirt/', import.meta.url));
const validate = spawnSync('which', ['virt-xml-validate'], { encoding: 'utf8' }).stdout.trim();
const xmllint = spawnSync('which', ['xmllint'], { encoding: 'utf8' }).stdout.trim();
const skip =
  validate === ''
    ? 'virt-xml-validate is not installed (apt-get install libvirt-clients libxml2-utils)'
    : xmllint === ''
      ? 'xmllint, which virt-xml-validate runs, is not installed (apt-get install libxml2-utils)'
      : false;
const SOCKET = readFileSync(fileURLToPath(new URL('../../contrib/systemd/vunet.socket', import.meta.url)), 'utf8').match(/^ListenStream=(.*)$/m)?.[1];

for (const [file, tcg] of [
  ['vunet-guest.xml', false],
  ['vunet-guest-tcg.xml', true],
] as const) {
  t.test(`contrib/libvirt/${file}`, async (t) => {
    const xml = readFileSync(join(DIR, file), 'utf8');
    t.match(xml, /<interface type='vhostuser'>/);
    t.match(xml, `<source type='unix' path='${SOCKET}' mode='client'>`, "vunet's socket (contrib/systemd's), QEMU the client");
    t.match(xml, /<reconnect enabled='yes'/, 'QEMU reconnects when vunet restarts');
    t.match(xml, /<model type='virtio'\/>/);
    t.match(xml, /<memoryBacking>\s*<source type='memfd'\/>\s*<access mode='shared'\/>\s*<\/memoryBacking>/, 'guest RAM a shared memfd');
    t.match(xml, tcg ? /<domain type='qemu'/ : /<domain type='kvm'/);
    if (tcg) t.match(xml, /<qemu:property name='vectors' type='unsigned' value='0'\/>/, 'vectors=0 under TCG');
    else t.notMatch(xml, /vectors/, 'MSI-X kept under KVM');
  });
  t.test(`contrib/libvirt/${file} validates against libvirt's schema`, { skip }, async (t) => {
    const r = spawnSync(validate, [join(DIR, file), 'domain'], { encoding: 'utf8', timeout: 30_000 });
    t.equal(r.status, 0, `virt-xml-validate: ${r.stdout.trim()} ${r.stderr.trim()}`);
  });
}

t.test('virt-xml-validate refuses a domain that is wrong (the check can fail)', { skip }, async (t) => {
  const bad = readFileSync(join(DIR, 'vunet-guest.xml'), 'utf8').replace("<access mode='shared'/>", "<access mode='open'/>");
  const r = spawnSync(validate, ['-', 'domain'], { input: bad, encoding: 'utf8', timeout: 30_000 });
  t.not(r.status, 0);
});
