import { createKeyv } from '@keyv/redis';
import { CacheModule } from '@nestjs/cache-manager';
import { Module } from '@nestjs/common';
import { BusinessesController } from './businesses.controller';
import { BusinessesService } from './businesses.service';
import { config } from './config';
import { Database } from './database';
import { HealthController } from './health.controller';

@Module({
  imports: [
    CacheModule.registerAsync({
      useFactory: () => ({
        // Keys are KEY_PREFIX followed by the request URL, e.g. `nestpeer:/api/businesses/stats`.
        stores: [
          createKeyv(config.redisUrl, {
            namespace: config.keyPrefix || undefined,
            keyPrefixSeparator: '',
          }),
        ],
      }),
    }),
  ],
  controllers: [BusinessesController, HealthController],
  providers: [Database, BusinessesService],
})
export class AppModule {}
