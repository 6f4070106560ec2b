import 'reflect-metadata';
import cluster from 'node:cluster';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { config } from './config';

async function serve(): Promise<void> {
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  app.enableShutdownHooks();
  await app.listen(config.port, config.host);
  if (cluster.isPrimary || cluster.worker?.id === 1) {
    const workers = config.workers > 1 ? ` (${config.workers} workers)` : '';
    console.log(`nest-peer listening on ${await app.getUrl()}${workers}`);
  }
}

if (config.workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < config.workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.error(`nest-peer: worker ${worker.process.pid} exited (${signal ?? code})`);
    process.exit(1);
  });
} else {
  serve().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
