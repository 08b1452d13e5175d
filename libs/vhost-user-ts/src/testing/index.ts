// The testing kit: a driver-side frontend for other packages' tests, and the addon's raw calls
// (eventfds, memfds, mappings, unix sockets) for tests that play a misbehaving frontend.
export { DriverQueue, FrontendError, TestFrontend, TestGuestMemory } from './frontend.js';
export type { BufferSpec, FrontendOptions, HandshakeOptions, Reply, UsedElem } from './frontend.js';
export { native } from '../native.js';
export type { MemfdSealing, NativeBinding, NativeMapping, NativePoller, RecvResult } from '../native.js';
