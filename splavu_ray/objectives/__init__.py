"""Loss functions, pure and stateless: SPLAVU's (NT-Xent budget, latent consistency, action CE, their
weighted total), temporal action detection's and weakly supervised anomaly detection's."""
