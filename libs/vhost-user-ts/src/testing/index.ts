// The testing kit: a driver-side frontend for other packages' tests.
export { DriverQueue, FrontendError, TestFrontend, TestGuestMemory } from './frontend.js';
export type { BufferSpec, FrontendOptions, HandshakeOptions, Reply, UsedElem } from './frontend.js';
